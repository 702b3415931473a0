//! End-to-end: the users file is the running server's, without a signal. `imgserver user add`
//! and `user del` on a running server's state directory take effect for new connections (the
//! master looks at the file once a second); SIGHUP still rereads it at once.
//!
//! Trust boundary: the local administrator's commands against a live server, and clients
//! logging in over loopback.

use std::process::{Command, Stdio};
use std::time::Duration;

use netproto_sys::{Client, ClientConfig};
use testkit::*;

const LATE: (&str, &str) = ("late", "late-password");

fn try_login(addr: &str, user: &str, password: &str) -> Result<Client, String> {
    let cfg = ClientConfig::new(user, password.as_bytes()).unwrap();
    Client::connect(addr, &cfg, None, Duration::from_secs(10)).map_err(|e| e.to_string())
}

fn reloads(srv: &Server, why: &str) -> usize {
    srv.log_text()
        .lines()
        .filter(|l| l.contains("reloaded users from") && l.contains(why))
        .count()
}

#[test]
fn users_added_and_deleted_on_a_running_server_take_effect_without_a_signal() {
    let srv = Server::start("users-watch", &[]);
    let refused = try_login(&srv.addr, LATE.0, LATE.1)
        .map(|_| ())
        .unwrap_err();
    assert!(refused.contains("auth"), "unknown user: {refused}");

    server::add_user(srv.dir(), LATE.0, LATE.1);
    srv.wait(
        "the master rereads the changed users file",
        Duration::from_secs(10),
        || reloads(&srv, "(the file changed)") == 1,
    );
    let mut c = try_login(&srv.addr, LATE.0, LATE.1).expect("the added user logs in");
    c.send_ping(1, b"hi", Duration::from_secs(5)).unwrap();
    // The user who was there from the start still logs in: the new file replaced the old.
    drop(connect(&srv.addr));

    let out = Command::new(imgserver_bin())
        .args(["user", "del", LATE.0, "--state-dir"])
        .arg(srv.dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "user del: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("picks it up within a second"),
        "user del says when it takes effect: {out:?}"
    );
    srv.wait(
        "the master rereads it again",
        Duration::from_secs(10),
        || reloads(&srv, "(the file changed)") == 2,
    );
    let refused = try_login(&srv.addr, LATE.0, LATE.1)
        .map(|_| ())
        .unwrap_err();
    assert!(refused.contains("auth"), "deleted user: {refused}");
    // A connection logged in before the deletion keeps its session.
    c.send_ping(2, b"still", Duration::from_secs(5)).unwrap();

    srv.signal(Signal::SIGHUP);
    srv.wait(
        "SIGHUP still rereads the file",
        Duration::from_secs(10),
        || reloads(&srv, "(SIGHUP)") == 1,
    );
    assert_eq!(srv.stat("logins_ok"), 2, "late, then the original user");
}
