//! End-to-end: several servers as one cluster behind a balancer. Servers given one
//! `--key-file` show one fingerprint, so one known_servers pin serves for all of them; a user
//! added once to a shared `--users-file` logs in on each; servers started at once on a missing
//! key file create it once and agree on it; the `--agent-listen` port says `up N%` while
//! serving and `drain` through shutdown's grace period.
//!
//! Trust boundary: the local administrator's files shared by several servers, and clients and
//! a balancer's agent checks over loopback.

use std::io::Read;
use std::time::Duration;

use netproto_sys::{Client, ClientConfig};
use testkit::*;

const LATE: (&str, &str) = ("late", "late-password");

/// The fingerprint a server logged at start (`server key fingerprint SHA256:... (PATH)`).
fn fingerprint(srv: &Server) -> String {
    let log = srv.log_text();
    let line = log
        .lines()
        .find_map(|l| l.split("server key fingerprint ").nth(1))
        .unwrap_or_else(|| panic!("no fingerprint line; log:\n{log}"));
    line.split_whitespace().next().unwrap().to_string()
}

fn try_login(addr: &str, user: &str, password: &str) -> Result<Client, String> {
    let cfg = ClientConfig::new(user, password.as_bytes()).unwrap();
    Client::connect(addr, &cfg, None, Duration::from_secs(10)).map_err(|e| e.to_string())
}

fn reloads(srv: &Server) -> usize {
    srv.log_text()
        .lines()
        .filter(|l| l.contains("reloaded users from") && l.contains("(the file changed)"))
        .count()
}

#[test]
fn two_servers_with_one_key_file_and_one_users_file_are_one_identity() {
    let shared = TempDir::new("cluster-shared");
    let key = shared.join("cluster.key");
    let users = shared.join("cluster-users");
    add_user_to_file(&users, USER, PASSWORD);
    let args = [
        "--workers",
        "1",
        "--key-file",
        key.to_str().unwrap(),
        "--users-file",
        users.to_str().unwrap(),
    ];
    let a = Server::start("cluster-a", &args);
    // Read-only from now on: the second server must only read it.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    let b = Server::start("cluster-b", &args);
    let fp = fingerprint(&a);
    assert_eq!(fingerprint(&b), fp, "one key file, one fingerprint");
    assert!(a.log_text().contains(&format!("({})", key.display())));
    assert!(a.log_text().contains("created server key"));
    assert!(!b.log_text().contains("created server key"));
    assert!(!a.dir().join("server.key").exists() && !b.dir().join("server.key").exists());

    // One pin: the first use of A pins its key; the same line under B's address is B's pin,
    // and B is accepted without a new pin.
    let known = shared.join("known_servers");
    let ok = ImgClient::new(&a.addr, &known).run(&["ping"]);
    assert!(ok.status.success(), "ping A: {ok:?}");
    let pinned = std::fs::read_to_string(&known).unwrap();
    let pin_key = pinned.split_whitespace().nth(1).unwrap().to_string();
    std::fs::write(&known, format!("{pinned}{} {pin_key}\n", b.addr)).unwrap();
    let before = std::fs::read_to_string(&known).unwrap();
    let ok = ImgClient::new(&b.addr, &known).run(&["ping"]);
    assert!(ok.status.success(), "ping B with A's pin: {ok:?}");
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        before,
        "no new pin"
    );
    // Pin by fingerprint: A's logged fingerprint pins B in a fresh file.
    let fresh = shared.join("known_fresh");
    let ok = ImgClient::new(&b.addr, &fresh).run(&["pin", "--fingerprint", &fp]);
    assert!(ok.status.success(), "pin B by A's fingerprint: {ok:?}");
    assert!(std::fs::read_to_string(&fresh).unwrap().contains(&pin_key));

    // A user added once logs in on both.
    for s in [&a, &b] {
        assert!(try_login(&s.addr, LATE.0, LATE.1).is_err());
    }
    add_user_to_file(&users, LATE.0, LATE.1);
    for s in [&a, &b] {
        s.wait(
            "the shared users file reloaded",
            Duration::from_secs(10),
            || reloads(s) == 1,
        );
        let mut c = try_login(&s.addr, LATE.0, LATE.1).expect("the added user logs in");
        c.send_ping(1, b"hi", Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn three_servers_started_at_once_on_a_missing_key_file_agree_on_one_key() {
    let shared = TempDir::new("cluster-race");
    let key = shared.join("cluster.key");
    let key_arg = key.to_str().unwrap().to_string();
    let servers: Vec<Server> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let key_arg = &key_arg;
                s.spawn(move || {
                    Server::start(
                        &format!("cluster-race-{i}"),
                        &["--workers", "1", "--key-file", key_arg],
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let fps: Vec<String> = servers.iter().map(fingerprint).collect();
    assert!(fps.iter().all(|f| *f == fps[0]), "fingerprints {fps:?}");
    let created = servers
        .iter()
        .filter(|s| s.log_text().contains("created server key"))
        .count();
    assert_eq!(created, 1, "one server created the key");
    let names: Vec<_> = std::fs::read_dir(shared.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("cluster.key")]);
    for s in &servers {
        drop(s.connect());
    }
}

/// The agent-check address the server logged.
fn agent_addr(srv: &Server) -> String {
    let mut addr = String::new();
    srv.wait(
        "the agent-check address",
        Duration::from_secs(5),
        || match srv
            .log_text()
            .lines()
            .find_map(|l| l.split("agent-check listening on ").nth(1))
        {
            Some(a) => {
                addr = a.trim().to_string();
                true
            }
            None => false,
        },
    );
    addr
}

/// One agent check: the line the port answered, or the error.
fn agent_says(addr: &str) -> String {
    let mut s = match std::net::TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return format!("connect: {e}"),
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = String::new();
    match s.read_to_string(&mut line) {
        Ok(_) => line,
        Err(e) => format!("read: {e}"),
    }
}

#[test]
fn the_agent_says_up_then_drain_through_the_grace_period() {
    let mut srv = Server::builder("cluster-agent")
        .args(&[
            "--workers",
            "1",
            "--grace",
            "20s",
            "--agent-listen",
            "127.0.0.1:0",
        ])
        .fault_injection()
        .start();
    let agent = agent_addr(&srv);
    // A new process's first `up` answers also say `ready` (undoing a drain its predecessor
    // said); whether a later one still does depends on the clock, so those are compared
    // without it.
    assert_eq!(
        agent_says(&agent),
        "up ready 100%\n",
        "idle, one ready worker"
    );
    let mut c = srv.connect();
    let mut input = b"IMGSERVER-FAULT-SLOW\n".to_vec();
    input.extend(sample("chelsea_64x64.png"));
    send_job(&mut c, 1, "noop", &input);
    // The only worker busy: in rotation, at the least weight.
    let mut last = String::new();
    srv.wait("the agent sees the job", Duration::from_secs(5), || {
        last = agent_says(&agent).replace("up ready ", "up ");
        last == "up 1%\n"
    });
    srv.signal(Signal::SIGTERM);
    srv.wait("the agent says drain", Duration::from_secs(5), || {
        last = agent_says(&agent);
        last == "drain\n"
    });
    // The job still running when drain was said finishes, then the server exits.
    let mut finished = false;
    for _ in 0..2 {
        match wait_job(&mut c, 1, Duration::from_secs(15)) {
            Outcome::Ok { .. } => {
                finished = true;
                break;
            }
            Outcome::Shutdown => {}
            o => panic!("{o:?}"),
        }
    }
    assert!(finished, "the slow job finished within the grace period");
    let st = srv
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|e| srv.fail(e));
    assert_eq!(st.code(), Some(0));
    let log = std::fs::read_to_string(&srv.log).unwrap();
    assert!(!log.contains("jobs unfinished"), "log:\n{log}");
}

#[test]
fn an_existing_key_file_in_a_read_only_directory_is_only_read() {
    const NOBODY: (u32, u32) = (65534, 65534);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run the server as another user");
        return;
    }
    let shared = TempDir::new("cluster-ro");
    let key = shared.join("cluster.key");
    let key_arg = key.to_str().unwrap().to_string();
    let first = Server::start("cluster-ro-a", &["--workers", "1", "--key-file", &key_arg]);
    let fp = fingerprint(&first);
    drop(first);
    // Neither the file nor its directory is writable by the server's user.
    for p in [shared.path(), key.as_path()] {
        std::os::unix::fs::chown(p, Some(NOBODY.0), Some(NOBODY.1)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let srv = Server::builder("cluster-ro-b")
        .args(&["--workers", "1", "--key-file", &key_arg])
        .run_as(NOBODY.0, NOBODY.1)
        .start();
    assert_eq!(fingerprint(&srv), fp);
    assert!(!srv.log_text().contains("created server key"));
    drop(srv.connect());
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
}
