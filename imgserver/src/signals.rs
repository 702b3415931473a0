//! Signal handling in the nginx manner: handlers only record what arrived (atomics) and poke
//! a self-pipe so the event loop wakes; all real work happens in the loop.
//!
//! Trust boundary: code here runs in signal context, where only async-signal-safe calls are
//! allowed — atomic stores and write(2) on a non-blocking pipe, nothing else.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;

use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static STOP_REQUESTS: AtomicUsize = AtomicUsize::new(0);
static CHILD_EXITED: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Keeps the pipe's write end open for the process lifetime (the handler uses its number).
static WAKE_WRITE: OnceLock<OwnedFd> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: reading and restoring errno around write(2) keeps the interrupted code's errno
    // intact; __errno_location is async-signal-safe (it returns a thread-local address).
    let saved = unsafe { *libc::__errno_location() };
    match sig {
        libc::SIGINT | libc::SIGTERM => {
            STOP_REQUESTS.fetch_add(1, SeqCst);
        }
        libc::SIGCHLD => CHILD_EXITED.store(true, SeqCst),
        libc::SIGHUP => RELOAD.store(true, SeqCst),
        _ => {}
    }
    let fd = WAKE_FD.load(SeqCst);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, so a full pipe just
        // drops the byte (the loop is already due to wake).
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// Installs the handlers for SIGINT, SIGTERM, SIGCHLD and SIGHUP, ignores SIGPIPE, and returns
/// the self-pipe's read end for the event loop to watch.
pub fn install() -> io::Result<OwnedFd> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    WAKE_FD.store(w.as_raw_fd(), SeqCst);
    let _ = WAKE_WRITE.set(w);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGCHLD,
        Signal::SIGHUP,
    ] {
        // SAFETY: `on_signal` only touches atomics and calls write(2), both async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    // A peer that vanishes mid-write must yield EPIPE, not kill the master.
    // SAFETY: SIG_IGN installs no code.
    unsafe {
        sigaction(
            Signal::SIGPIPE,
            &SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty()),
        )
    }?;
    Ok(r)
}

/// The signals a worker ignores: whoever signals the whole process group (systemd's stop,
/// which signals the unit's whole control group; Ctrl-C, which signals the terminal's
/// foreground group; a hang-up) means the server, and only the master decides when a worker
/// stops (by closing its channel once its job is done, or SIGKILL, which cannot be ignored).
pub const WORKER_IGNORES: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// In a worker: ignores [`WORKER_IGNORES`]. The spawn already set them ignored before exec
/// (an ignored disposition survives exec, so no signal falls between exec and this call);
/// this makes the worker's own start-up say so, and it runs before the seccomp filter, which
/// would allow it anyway (it only keeps SIGSYS's handler fixed).
pub fn ignore_group_signals() -> io::Result<()> {
    for sig in WORKER_IGNORES {
        let sig = Signal::try_from(sig)?;
        // SAFETY: SIG_IGN installs no code.
        unsafe {
            sigaction(
                sig,
                &SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty()),
            )
        }?;
    }
    Ok(())
}

/// Empties the self-pipe.
pub fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 64];
    while matches!(nix::unistd::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// How many SIGINT/SIGTERM have arrived so far.
pub fn stop_requests() -> usize {
    STOP_REQUESTS.load(SeqCst)
}

/// Whether a child exited since the last call.
pub fn take_child_exited() -> bool {
    CHILD_EXITED.swap(false, SeqCst)
}

/// Whether SIGHUP arrived since the last call.
pub fn take_reload() -> bool {
    RELOAD.swap(false, SeqCst)
}
