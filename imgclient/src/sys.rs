//! The fenced module for process-level system calls: the open-files limit (setrlimit) and a
//! readiness check on a socket (poll). Both through nix's safe wrappers, so the crate keeps
//! `#![deny(unsafe_code)]` without exception. (The password prompt is `cliutil::password`.)
//!
//! Trust boundary: the process's resource limits.

use std::io;
use std::os::fd::BorrowedFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

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
    use std::io::Write;
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
