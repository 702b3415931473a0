//! Processes seen from outside through /proc: children (the workers), open fds and what each
//! points at, sockets by kind, memfds, resident memory, signals.
//!
//! Trust boundary: none; reads what the kernel reports about processes of this user. Nothing
//! here asks the server anything, so these checks hold whatever the server believes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Child processes of `pid` (the workers of a master).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Whether `pid` is a running process (a zombie counts as gone: it runs no code and holds no
/// fd or mapping).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Resident memory of `pid` in KiB (0 if it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// CPU time `pid` has used so far (user + system), from /proc/PID/stat; zero if it is gone.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)
        .unwrap_or(100) as u64;
    std::time::Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

/// Sends `sig` to `pid`; false if there is no such process.
pub fn kill(pid: u32, sig: Signal) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid as i32), sig).is_ok()
}

/// Raises this process's open-files soft limit to its hard limit (tests open many sockets).
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// What an open fd points at, from its /proc/PID/fd link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FdTarget {
    /// `socket:[INODE]`; [`socket_table`] says which kind.
    Socket(u64),
    /// `pipe:[INODE]`.
    Pipe(u64),
    /// `/memfd:NAME (deleted)`, by NAME.
    Memfd(String),
    /// `anon_inode:[eventpoll]` and the like.
    AnonInode(String),
    /// A path in the filesystem.
    Path(PathBuf),
}

impl FdTarget {
    /// Classifies a /proc/PID/fd link target.
    pub fn parse(link: &str) -> FdTarget {
        let inode = |rest: &str| rest.strip_suffix(']').and_then(|n| n.parse().ok());
        if let Some(n) = link.strip_prefix("socket:[").and_then(inode) {
            FdTarget::Socket(n)
        } else if let Some(n) = link.strip_prefix("pipe:[").and_then(inode) {
            FdTarget::Pipe(n)
        } else if let Some(name) = link.strip_prefix("/memfd:") {
            FdTarget::Memfd(name.trim_end_matches(" (deleted)").to_string())
        } else if let Some(kind) = link.strip_prefix("anon_inode:") {
            FdTarget::AnonInode(kind.to_string())
        } else {
            FdTarget::Path(PathBuf::from(link))
        }
    }
}

/// One open fd of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fd {
    pub num: i32,
    pub target: FdTarget,
}

/// Every open fd of `pid`, by number.
pub fn fds(pid: u32) -> std::io::Result<Vec<Fd>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let e = e?;
        let Some(num) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // An fd closed between readdir and readlink is simply not there any more.
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        out.push(Fd {
            num,
            target: FdTarget::parse(&link.to_string_lossy()),
        });
    }
    out.sort_by_key(|f| f.num);
    Ok(out)
}

/// A socket's kind, from the tables in /proc/net (this network namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// AF_UNIX; `sock_type` is 1 stream, 2 datagram, 5 seqpacket.
    Unix { sock_type: u32, listening: bool },
    /// TCP over IPv4 or IPv6.
    Tcp { listening: bool },
    /// UDP, UDP-Lite or raw IP over IPv4 or IPv6.
    OtherInet,
    /// Netlink.
    Netlink,
}

/// Every socket in this network namespace by inode.
pub fn socket_table() -> HashMap<u64, SocketKind> {
    let mut t = HashMap::new();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is __SO_ACCEPTCON.
    for l in read("/proc/net/unix").lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 7 {
            continue;
        }
        let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
        let sock_type = u32::from_str_radix(f[4], 16).unwrap_or(0);
        if let Ok(inode) = f[6].parse() {
            t.insert(
                inode,
                SocketKind::Unix {
                    sock_type,
                    listening: flags & 0x10000 != 0,
                },
            );
        }
    }
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode; state 0A is LISTEN.
    for p in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for l in read(p).lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let (Some(st), Some(Ok(inode))) = (f.get(3), f.get(9).map(|s| s.parse())) {
                t.insert(
                    inode,
                    SocketKind::Tcp {
                        listening: *st == "0A",
                    },
                );
            }
        }
    }
    for p in [
        "/proc/net/udp",
        "/proc/net/udp6",
        "/proc/net/udplite",
        "/proc/net/udplite6",
        "/proc/net/raw",
        "/proc/net/raw6",
    ] {
        for l in read(p).lines().skip(1) {
            if let Some(Ok(inode)) = l.split_whitespace().nth(9).map(|s| s.parse()) {
                t.insert(inode, SocketKind::OtherInet);
            }
        }
    }
    // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    for l in read("/proc/net/netlink").lines().skip(1) {
        if let Some(Ok(inode)) = l.split_whitespace().nth(9).map(|s| s.parse()) {
            t.insert(inode, SocketKind::Netlink);
        }
    }
    t
}

/// Inodes of the memfds named `imgserver*` that `pid` holds open or mapped.
pub fn memfd_inodes(pid: u32) -> HashSet<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            let is_ours = std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("/memfd:imgserver"));
            if is_ours {
                if let Ok(m) = std::fs::metadata(e.path()) {
                    out.insert(m.ino());
                }
            }
        }
    }
    // A mapping keeps a memfd alive after its fd is closed: maps lines carry the inode.
    // addr perms offset dev inode path
    for l in std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
    {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 6 && f[5].starts_with("/memfd:imgserver") {
            if let Ok(inode) = f[4].parse() {
                out.insert(inode);
            }
        }
    }
    out
}

/// Every process on the machine (pids from /proc).
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose environment holds `KEY=VALUE` exactly: a server started by the kit and
/// everything it started (workers inherit the environment), and nobody else's.
pub fn pids_with_env(key: &str, value: &str) -> Vec<u32> {
    let want = format!("{key}={value}");
    all_pids()
        .into_iter()
        .filter(|pid| {
            process_alive(*pid)
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()))
        })
        .collect()
}

/// The process group of `pid` (field 5 of /proc/PID/stat), if it is alive.
pub fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Live processes in process group `pgid`: a test server's master (started as a group
/// leader) and its workers, which inherit the group and keep it if the master dies.
pub fn pids_in_group(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| process_alive(*pid) && process_group(*pid) == Some(pgid))
        .collect()
}

/// `/proc/PID/environ` as `KEY=VALUE` strings (empty if unreadable).
pub fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| String::from_utf8_lossy(kv).into_owned())
        .collect()
}

/// The value of `field` (e.g. `NoNewPrivs`, `Uid`) in /proc/PID/status, whitespace-trimmed.
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_links_are_classified() {
        assert_eq!(FdTarget::parse("socket:[12345]"), FdTarget::Socket(12345));
        assert_eq!(FdTarget::parse("pipe:[7]"), FdTarget::Pipe(7));
        assert_eq!(
            FdTarget::parse("/memfd:imgserver-ring (deleted)"),
            FdTarget::Memfd("imgserver-ring".into())
        );
        assert_eq!(
            FdTarget::parse("anon_inode:[eventpoll]"),
            FdTarget::AnonInode("[eventpoll]".into())
        );
        assert_eq!(
            FdTarget::parse("/dev/null"),
            FdTarget::Path("/dev/null".into())
        );
        // A malformed socket link is a path, not a socket with a made-up inode.
        assert_eq!(
            FdTarget::parse("socket:[x]"),
            FdTarget::Path("socket:[x]".into())
        );
    }

    #[test]
    fn this_process_sees_its_own_sockets_by_kind() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let me = std::process::id();
        let table = socket_table();
        let kind_of = |fd: i32| {
            let f = fds(me).unwrap().into_iter().find(|f| f.num == fd).unwrap();
            match f.target {
                FdTarget::Socket(inode) => table.get(&inode).copied(),
                t => panic!("fd {fd} is {t:?}"),
            }
        };
        use std::os::fd::AsRawFd;
        assert_eq!(
            kind_of(listener.as_raw_fd()),
            Some(SocketKind::Tcp { listening: true })
        );
        assert_eq!(
            kind_of(tcp.as_raw_fd()),
            Some(SocketKind::Tcp { listening: false })
        );
        assert_eq!(
            kind_of(a.as_raw_fd()),
            Some(SocketKind::Unix {
                sock_type: 2,
                listening: false
            })
        );
    }

    #[test]
    fn liveness_and_memory_of_this_process() {
        let me = std::process::id();
        assert!(process_alive(me));
        assert!(rss_kb(me) > 0);
        assert!(!process_alive(u32::MAX / 2), "no such pid");
        assert_eq!(
            process_group(me),
            Some(nix::unistd::getpgrp().as_raw() as u32)
        );
        assert!(pids_in_group(process_group(me).unwrap()).contains(&me));
        assert!(status_field(me, "Pid").is_some_and(|p| p == me.to_string()));
        assert!(status_field(me, "NoSuchField").is_none());
    }
}
