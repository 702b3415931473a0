//! The server's state directory: the key file (managed by libnetproto), the users file of
//! password verifiers, and the pid file that lets `imgserver stats` find a running server.
//! The key and users files live there unless `--key-file` / `--users-file` name others (one
//! file shared by several servers makes them one cluster identity with one set of users).
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

/// The server key: `file` when given (`--key-file`), else `DIR/server.key`.
pub fn key_path(dir: &Path, file: Option<&Path>) -> PathBuf {
    file.map_or_else(|| dir.join("server.key"), Path::to_path_buf)
}

/// The users file: `file` when given (`--users-file`), else `DIR/users`.
pub fn users_path(dir: &Path, file: Option<&Path>) -> PathBuf {
    file.map_or_else(|| dir.join("users"), Path::to_path_buf)
}

pub fn pid_path(dir: &Path) -> PathBuf {
    dir.join("imgserver.pid")
}

/// Users file lines: `name:verifier`. Comments (#) and blank lines are skipped; a malformed
/// line is an error naming it, never silently dropped.
pub fn read_users(path: &Path) -> io::Result<Vec<(String, String)>> {
    let text = match fs::read_to_string(path) {
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

/// Replaces the users file at `path` (temp file beside it + rename). Its directory is created
/// (mode 0700) only when missing, so a shared directory keeps the mode its owner gave it.
pub fn write_users(path: &Path, users: &[(String, String)]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        ensure_dir(dir)?;
    }
    let name = path
        .file_name()
        .map_or("users".into(), |n| n.to_string_lossy());
    // One temp name per process: two `user add` at once never write into each other's file.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
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
    fs::rename(&tmp, path)
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
        let path = users_path(&dir, None);
        write_users(&path, &users).unwrap();
        assert_eq!(read_users(&path).unwrap(), users);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(&path, "broken line\n").unwrap();
        assert!(read_users(&path).is_err());
        // Elsewhere, when named.
        let other = dir.join("shared/cluster-users");
        assert_eq!(users_path(&dir, Some(&other)), other);
        write_users(&other, &users).unwrap();
        assert_eq!(read_users(&other).unwrap(), users);
        fs::remove_dir_all(&dir).unwrap();
    }
}
