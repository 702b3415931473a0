//! The server's state directory: the key file (managed by libnetproto), the users file of
//! password verifiers, and the pid file that lets `imgserver stats` find a running server.
//!
//! Trust boundary: the users file decides who may log in; it is written atomically (temp
//! file + rename) with mode 0600 so a crash never leaves it half-written or readable by others.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("imgserver")
}

pub fn resolve(dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf).unwrap_or_else(default_dir)
}

pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("server.key")
}

pub fn users_path(dir: &Path) -> PathBuf {
    dir.join("users")
}

pub fn pid_path(dir: &Path) -> PathBuf {
    dir.join("imgserver.pid")
}

/// Users file lines: `name:verifier`. Comments (#) and blank lines are skipped; a malformed
/// line is an error naming it, never silently dropped.
pub fn read_users(dir: &Path) -> io::Result<Vec<(String, String)>> {
    let text = match fs::read_to_string(users_path(dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, verifier) = line.split_once(':').ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("users file line {}: expected name:verifier", i + 1),
            )
        })?;
        out.push((name.to_string(), verifier.to_string()));
    }
    Ok(out)
}

pub fn write_users(dir: &Path, users: &[(String, String)]) -> io::Result<()> {
    ensure_dir(dir)?;
    let tmp = dir.join(".users.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(
        f,
        "# imgserver users: name:verifier (salted, iterated SCRAM-SHA-256 verifiers; no passwords)"
    )?;
    for (n, v) in users {
        writeln!(f, "{n}:{v}")?;
    }
    f.sync_all()?;
    fs::rename(&tmp, users_path(dir))
}

/// One server per state directory: an exclusive lock on `STATE_DIR/imgserver.lock`, held for
/// the life of the process and released by the kernel however it ends (so a `kill -9` leaves
/// nothing to clean up). Two servers sharing a directory would race to create the key and
/// overwrite each other's pid file.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

/// Takes the state directory's lock, or says which server holds it.
pub fn lock_dir(dir: &Path) -> Result<DirLock, String> {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("imgserver.lock");
    // std opens with O_CLOEXEC: workers never inherit the lock.
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(DirLock(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let who = read_pid(dir).map_or(String::new(), |(pid, _)| format!(" (pid {pid})"));
            Err(format!(
                "another imgserver{who} is running with state directory {}; give this one its own --state-dir",
                dir.display()
            ))
        }
        Err((_, e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// The pid file: `PID STATS_FD`, so `imgserver stats` can open /proc/PID/fd/STATS_FD.
pub fn write_pid(dir: &Path, stats_fd: i32) -> io::Result<()> {
    let tmp = dir.join(".imgserver.pid.tmp");
    fs::write(&tmp, format!("{} {}\n", std::process::id(), stats_fd))?;
    fs::rename(&tmp, pid_path(dir))
}

pub fn read_pid(dir: &Path) -> io::Result<(u32, i32)> {
    let text = fs::read_to_string(pid_path(dir))?;
    let mut it = text.split_whitespace();
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed pid file");
    let pid = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let fd = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((pid, fd))
}

/// Removes the pid file if it is ours.
pub fn remove_pid(dir: &Path) {
    if matches!(read_pid(dir), Ok((pid, _)) if pid == std::process::id()) {
        let _ = fs::remove_file(pid_path(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_round_trips_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("imgserver-state-test-{}", std::process::id()));
        let users = vec![("alice".to_string(), "scram-sha256$4096$a$b$c".to_string())];
        write_users(&dir, &users).unwrap();
        assert_eq!(read_users(&dir).unwrap(), users);
        let mode = fs::metadata(users_path(&dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(users_path(&dir), "broken line\n").unwrap();
        assert!(read_users(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
