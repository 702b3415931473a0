//! Starting a filter worker: fork+exec of this same binary in its hidden `worker` mode, with
//! the worker's end of its socketpair at fd 3, an empty environment and nothing else open.
//!
//! Trust boundary: the code between fork and exec runs in a copy of a possibly multithreaded
//! process, so it may only make async-signal-safe system calls (dup2, fcntl, prctl, getppid,
//! close_range, signal): no allocation, no locks, no logging. Exec then gives the worker a clean
//! process image holding fds 0-2 (stdin on /dev/null, the master's stdout, and stderr on a
//! pipe the master reads and re-logs, `master/worker_log.rs`) and its channel, nothing more:
//! every other fd, including any the master inherited
//! from whoever started it without close-on-exec, is marked close-on-exec in the child before
//! exec. The environment is emptied except for the few variables the worker reads.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The fd number a worker finds its channel at.
pub const WORKER_FD: i32 = 3;

/// The environment variables a worker is given (when the master has them): the log filter,
/// and the start-up failpoint, which is passed only when fault injection is on. Nothing else:
/// in particular not systemd's NOTIFY_SOCKET and WATCHDOG_*, so no worker can speak for the
/// service (only the master says READY=1 or pings the watchdog).
const WORKER_ENV: &str = "RUST_LOG";
const FAULT_ENV: &str = "IMGSERVER_FAULT_WORKER_START";

/// What a worker is started with besides its channel.
#[derive(Debug, Clone)]
pub struct WorkerSpec<'a> {
    pub exe: &'a Path,
    pub index: usize,
    pub mem_limit_mb: u64,
    pub max_pixels: u64,
    pub fault_injection: bool,
    /// The uid and gid the worker switches to after its set-up (`None`: keep the master's).
    /// The switch happens in the worker after exec, not here: the binary may not be readable
    /// by that user.
    pub run_as: Option<(u32, u32)>,
    /// The kernel-enforced layers the worker applies before its first job.
    pub sandbox: crate::sandbox::Layers,
}

/// The highest fd number the child may have to mark close-on-exec when the kernel lacks
/// `close_range` (before 5.11 for its CLOEXEC flag): the hard open-files limit, read before
/// the fork because getrlimit is not on the async-signal-safe list.
fn fd_ceiling() -> libc::c_int {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1 << 20, |(_, hard)| hard);
    hard.min(libc::c_int::MAX as u64) as libc::c_int
}

/// Spawns a worker; `sock` is the worker's end of its channel (closed here after the spawn).
pub fn worker(spec: &WorkerSpec<'_>, sock: OwnedFd) -> io::Result<Child> {
    let raw = sock.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    let ceiling = fd_ceiling();
    let mut cmd = Command::new(spec.exe);
    cmd.arg("worker")
        .arg("--index")
        .arg(spec.index.to_string())
        .arg("--mem-limit-mb")
        .arg(spec.mem_limit_mb.to_string())
        .arg("--max-pixels")
        .arg(spec.max_pixels.to_string())
        .arg("--sandbox")
        .arg(spec.sandbox.to_string())
        .env_clear()
        .stdin(Stdio::null())
        // Whatever the worker writes (its log, a panic) reaches the log through the master,
        // with the master's timestamps and format, never raw.
        .stderr(Stdio::piped());
    if let Some(filter) = std::env::var_os(WORKER_ENV) {
        cmd.env(WORKER_ENV, filter);
    }
    if spec.fault_injection {
        cmd.arg("--fault-injection");
        if let Some(v) = std::env::var_os(FAULT_ENV) {
            cmd.env(FAULT_ENV, v);
        }
    }
    if let Some((uid, gid)) = spec.run_as {
        cmd.arg("--uid")
            .arg(uid.to_string())
            .arg("--gid")
            .arg(gid.to_string());
    }
    // SAFETY: the closure runs in the forked child before exec and uses only async-signal-safe
    // calls (fcntl, dup2, prctl, getppid, signal, the close_range system call, _exit) on plain
    // integers captured by value; it allocates nothing and takes no lock.
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
            // Deaf to the stop signals sent to the whole process group from before exec on
            // (the master's handlers are reset by exec, an ignored signal stays ignored), so
            // a systemd stop or a Ctrl-C that lands during a worker's start cannot kill it:
            // only the master stops workers.
            for sig in crate::signals::WORKER_IGNORES {
                if libc::signal(sig, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            // Last: everything above the channel becomes close-on-exec, so exec drops it —
            // fds the master inherited without the flag included. Marking instead of closing
            // keeps std's own close-on-exec pipe, which reports a failed exec, working.
            if libc::syscall(
                libc::SYS_close_range,
                (WORKER_FD + 1) as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) < 0
            {
                // ENOSYS or EINVAL: a kernel without close_range or its CLOEXEC flag. Mark
                // each fd; F_SETFD on a number that is not open fails harmlessly.
                let mut fd = WORKER_FD + 1;
                while fd < ceiling {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    fd += 1;
                }
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
