//! The fenced module for process- and terminal-level system calls: the no-echo password
//! prompt (termios), the open-files limit (setrlimit) and a readiness check on a socket
//! (poll). All through nix's safe wrappers, so the crate keeps `#![deny(unsafe_code)]`
//! without exception.
//!
//! Trust boundary: the controlling terminal (the password typed there must never be echoed or
//! left with echo off) and the process's resource limits.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::BorrowedFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, Termios};

/// Restores the terminal's settings even if reading the password fails or panics.
struct EchoGuard<'a> {
    tty: &'a std::fs::File,
    saved: Termios,
}

impl Drop for EchoGuard<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.tty, SetArg::TCSAFLUSH, &self.saved);
    }
}

/// Prompts on the controlling terminal (not stdin, which may carry an image) and reads one
/// line with echo off. Fails when the process has no terminal.
pub fn prompt_password(prompt: &str) -> io::Result<String> {
    let tty = OpenOptions::new().read(true).write(true).open("/dev/tty")?;
    let saved = tcgetattr(&tty).map_err(io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    // Keep the newline echoed so the cursor moves on after Enter.
    quiet.local_flags.insert(LocalFlags::ECHONL);
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).map_err(io::Error::from)?;
    let guard = EchoGuard { tty: &tty, saved };
    let mut line = String::new();
    BufReader::new(guard.tty).read_line(&mut line)?;
    drop(guard);
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// Whether `fd` has bytes (or EOF) to read right now, without blocking.
pub fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn nofile_limit_is_raised_to_at_least_the_old_soft_limit() {
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert!(raise_nofile_limit().unwrap() >= soft);
    }

    #[test]
    fn readable_reports_pending_bytes() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!readable_now(a.as_fd()));
        b.write_all(b"x").unwrap();
        assert!(readable_now(a.as_fd()));
    }
}
