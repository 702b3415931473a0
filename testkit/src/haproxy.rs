//! HAProxy in front of test servers: the configuration generated from dist/haproxy.cfg (its
//! one server line repeated per server), the real `haproxy` binary started in the foreground
//! on a free loopback port, and its stats socket read for each server's state.
//!
//! Trust boundary: test code; the administrator's side of the balancer (its configuration
//! and its admin socket). The template is the shipped file itself, so the tests check the
//! configuration users get.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::images::TempDir;
use crate::wait::{wait_until, Timeout};

/// The backend's name in dist/haproxy.cfg (the `show stat` rows of its servers).
pub const BACKEND: &str = "imgservers";

/// One server line to generate: its name, address and agent-check port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub addr: String,
    pub agent_port: u16,
}

/// The shipped template, dist/haproxy.cfg.
pub fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/haproxy.cfg")
}

/// Whether `haproxy` is on PATH. A test that needs it and finds it missing fails under CI
/// (CI=true) and is skipped, saying so, elsewhere; this decides which.
pub fn available_or_skip(test: &str) -> bool {
    let found = Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: haproxy is missing (CI=true): run scripts/install-deps.sh");
    }
    eprintln!("SKIPPED {test}: haproxy is not installed (scripts/install-deps.sh installs it)");
    false
}

/// The template with the first `server` line between `# servers: begin` and `# servers: end`
/// repeated once per backend (name, address and agent port replaced) and the other lines
/// of that block dropped. Pure, so it is unit-tested without HAProxy.
pub fn render(template: &str, backends: &[Backend]) -> Result<String, String> {
    let mut out = String::new();
    let mut in_block = false;
    let mut pattern: Option<&str> = None;
    let mut seen_block = false;
    for line in template.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("# servers: begin") {
            in_block = true;
            seen_block = true;
        } else if trimmed.starts_with("# servers: end") {
            let pattern = pattern.ok_or("no server line between the servers markers")?;
            for b in backends {
                out.push_str(&server_line(pattern, b)?);
                out.push('\n');
            }
            in_block = false;
        } else if in_block && trimmed.starts_with("server ") {
            pattern.get_or_insert(line);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !seen_block || in_block {
        return Err("the template lacks a servers: begin … servers: end block".into());
    }
    Ok(out)
}

fn server_line(pattern: &str, b: &Backend) -> Result<String, String> {
    let indent = &pattern[..pattern.len() - pattern.trim_start().len()];
    let mut words: Vec<String> = pattern.split_whitespace().map(str::to_string).collect();
    if words.len() < 3 {
        return Err(format!("server line without name and address: {pattern}"));
    }
    words[1] = b.name.clone();
    words[2] = b.addr.clone();
    if let Some(i) = words.iter().position(|w| w == "agent-port") {
        let port = words
            .get_mut(i + 1)
            .ok_or("agent-port without a port in the template")?;
        *port = b.agent_port.to_string();
    }
    Ok(format!("{indent}{}", words.join(" ")))
}

/// A running HAProxy; killed on drop (its log is printed if the test is failing).
#[derive(Debug)]
pub struct Haproxy {
    child: Option<Child>,
    /// Its frontend, where clients connect (`127.0.0.1:PORT`).
    pub addr: String,
    dir: TempDir,
}

impl Haproxy {
    /// Generates the configuration for `backends`, checks it (`haproxy -c`) and starts HAProxy
    /// in the foreground on a free loopback port.
    pub fn start(backends: &[Backend]) -> Haproxy {
        let template = std::fs::read_to_string(template_path()).expect("read dist/haproxy.cfg");
        Haproxy::start_from(&template, backends)
    }

    /// As [`Haproxy::start`], from another template (same markers and variables).
    pub fn start_from(template: &str, backends: &[Backend]) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, render(template, backends).expect("render")).unwrap();
        // A port the kernel just handed out and let go: free unless something takes it in
        // the instant before HAProxy binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let env = [
            ("IMGCLUSTER_BIND", addr.clone()),
            (
                "IMGCLUSTER_STATS_SOCKET",
                dir.join("stats.sock").display().to_string(),
            ),
        ];
        let check = Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&cfg)
            .envs(env.clone())
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy -c rejects the generated configuration:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start haproxy");
        let h = Haproxy {
            child: Some(child),
            addr,
            dir,
        };
        h.wait("the stats socket", Duration::from_secs(10), || {
            h.try_states().is_ok()
        });
        h
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("haproxy running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// One command on the stats socket (`show stat`), its whole answer.
    pub fn command(&self, cmd: &str) -> std::io::Result<String> {
        let mut s = UnixStream::connect(self.dir.join("stats.sock"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("{cmd}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// Each server of the backend with its `show stat` status (`UP`, `DOWN`, `DRAIN`,
    /// `MAINT`, `UP 1/2` while rising, …).
    pub fn try_states(&self) -> Result<Vec<(String, String)>, String> {
        let csv = self.command("show stat").map_err(|e| e.to_string())?;
        parse_states(&csv)
    }

    pub fn states(&self) -> Vec<(String, String)> {
        self.try_states()
            .unwrap_or_else(|e| panic!("show stat: {e}; haproxy log:\n{}", self.log_text()))
    }

    /// The status of server `name`.
    pub fn state(&self, name: &str) -> Option<String> {
        self.try_states()
            .ok()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// [`wait_until`], failing the test with HAProxy's log on timeout.
    pub fn wait(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) -> Duration {
        wait_until(what, timeout, cond).unwrap_or_else(|e| self.fail(e))
    }

    pub fn fail(&self, e: Timeout) -> ! {
        panic!(
            "{e}; servers {:?}; haproxy log:\n{}",
            self.try_states(),
            self.log_text()
        )
    }
}

/// The `(server, status)` rows of [`BACKEND`] in `show stat` CSV, by the header's column names.
pub fn parse_states(csv: &str) -> Result<Vec<(String, String)>, String> {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| format!("no CSV header in {csv:?}"))?;
    let col = |name: &str| {
        header
            .split(',')
            .position(|c| c == name)
            .ok_or_else(|| format!("no column {name} in {header}"))
    };
    let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
    Ok(lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&BACKEND) && f.get(sv).is_some_and(|s| *s != "BACKEND"))
        .map(|f| (f[sv].to_string(), f.get(st).unwrap_or(&"").to_string()))
        .collect())
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("haproxy log:\n{}", self.log_text());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "backend b\n    # servers: begin\n    server s1 127.0.0.1:7871 check agent-check agent-port 7881 agent-inter 500ms\n    server s2 127.0.0.1:7872 check agent-port 7882\n    # servers: end\n";

    #[test]
    fn the_first_server_line_is_repeated_per_backend() {
        let b = |n: &str, a: &str, p| Backend {
            name: n.into(),
            addr: a.into(),
            agent_port: p,
        };
        let out = render(
            TEMPLATE,
            &[b("a", "127.0.0.1:1", 11), b("b", "127.0.0.1:2", 12)],
        )
        .unwrap();
        assert_eq!(
            out,
            "backend b\n    # servers: begin\n    server a 127.0.0.1:1 check agent-check agent-port 11 agent-inter 500ms\n    server b 127.0.0.1:2 check agent-check agent-port 12 agent-inter 500ms\n    # servers: end\n"
        );
    }

    #[test]
    fn a_template_without_the_block_is_an_error() {
        assert!(render("backend b\n    server s1 x:1\n", &[]).is_err());
        assert!(render("# servers: begin\n# servers: end\n", &[]).is_err());
    }

    #[test]
    fn the_shipped_template_renders() {
        let t = std::fs::read_to_string(template_path()).unwrap();
        let out = render(
            &t,
            &[Backend {
                name: "x".into(),
                addr: "127.0.0.1:9".into(),
                agent_port: 10,
            }],
        )
        .unwrap();
        assert_eq!(out.matches("\n    server ").count(), 1, "{out}");
        assert!(
            out.contains("server x 127.0.0.1:9 weight 100 send-proxy-v2 "),
            "{out}"
        );
        assert!(out.contains("agent-port 10 "), "{out}");
    }

    #[test]
    fn show_stat_rows_by_column_name() {
        let csv = "# pxname,svname,qcur,status,weight\nimgserver,FRONTEND,,OPEN,\nimgservers,s1,0,UP,100\nimgservers,s2,0,DOWN,0\nimgservers,BACKEND,0,UP,100\n\n";
        assert_eq!(
            parse_states(csv).unwrap(),
            [("s1".into(), "UP".into()), ("s2".into(), "DOWN".into())]
        );
        assert!(parse_states("Unknown command\n").is_err());
    }
}
