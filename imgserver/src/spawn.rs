//! Starting a filter worker: fork+exec of this same binary in its hidden `worker` mode, with
//! the worker's end of its socketpair at fd 3.
//!
//! Trust boundary: the code between fork and exec runs in a copy of a possibly multithreaded
//! process, so it may only make async-signal-safe system calls (dup2, fcntl, prctl, getppid):
//! no allocation, no locks, no logging. Exec then gives the worker a clean process image
//! holding no client socket and no key material (every other fd is close-on-exec).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The fd number a worker finds its channel at.
pub const WORKER_FD: i32 = 3;

/// Spawns a worker; `sock` is the worker's end of its channel (closed here after the spawn).
pub fn worker(
    exe: &Path,
    index: usize,
    sock: OwnedFd,
    mem_limit_mb: u64,
    max_pixels: u64,
    fault_injection: bool,
) -> io::Result<Child> {
    let raw = sock.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .arg("--index")
        .arg(index.to_string())
        .arg("--mem-limit-mb")
        .arg(mem_limit_mb.to_string())
        .arg("--max-pixels")
        .arg(max_pixels.to_string())
        .stdin(Stdio::null());
    if fault_injection {
        cmd.arg("--fault-injection");
    }
    // SAFETY: the closure runs in the forked child before exec and uses only async-signal-safe
    // calls on plain integers captured by value.
    unsafe {
        cmd.pre_exec(move || {
            if raw == WORKER_FD {
                // Already at the right number: dup2 would be a no-op that keeps CLOEXEC set,
                // and the worker would start without its channel. Clear the flag instead.
                if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, WORKER_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Die with the master, whatever kills it (including SIGKILL).
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            // The master may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(sock);
    child
}

/// In a worker: takes ownership of the channel fd the master placed at `WORKER_FD`.
pub fn take_worker_fd() -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // Refuse to wrap a number that is not an open socket (e.g. `imgserver worker` typed by
    // hand): owning a random fd would close something else later.
    // SAFETY: borrowing a descriptor number for one fstat call; fstat fails cleanly on EBADF.
    let st = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(WORKER_FD) })
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no channel at fd 3: the worker mode is started by the master only",
            )
        })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fd 3 is not a socket",
        ));
    }
    // SAFETY: fd 3 is open (fstat succeeded), is the socket the master dup'ed there for us,
    // and nothing else in this freshly exec'd process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(WORKER_FD) })
}
