//! Least privilege for the processes that parse hostile images, and the one step the master
//! takes for itself: what a compromised worker can no longer do.
//!
//! Trust boundary: between a worker (untrusted once it has touched an image) and everything
//! else on the machine, the master first. A worker calls [`confine`] after its set-up (ring
//! and stats mapped, address-space limit set) and before it says Ready; the master calls
//! [`protect_master`] first thing.

use log::warn;
use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
use thiserror::Error;

/// The open-files limit of a worker: fds 0-2, the channel, the ring, the stats page (six),
/// plus a job's input memfd and its output memfd (eight at most, measured by the e2e tests),
/// with room for the fds `recvmsg` installs before the channel's checks reject a message.
pub const WORKER_NOFILE: u64 = 16;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("cannot set {what}: {source}")]
    Limit {
        what: &'static str,
        source: nix::Error,
    },
    #[error("cannot {what}: {source}")]
    Prctl {
        what: &'static str,
        source: nix::Error,
    },
}

/// Makes the master undumpable: no process of the same uid (a worker when the master runs
/// as an ordinary user) can ptrace it or read `/proc/PID/mem`, where the session keys and
/// the server key live; no core dump carries them to disk either. `imgserver stats` then
/// reaches the stats page through `statsock`, since `/proc/PID/fd` closes too.
pub fn protect_master() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warn!("cannot make the master undumpable (PR_SET_DUMPABLE 0): {e}");
    }
}

/// What a worker may still do, decided by the master's flags.
#[derive(Debug, Clone, Copy)]
pub struct Confinement {
    /// The worker's memory cap in MiB (0: none); it also bounds the largest output memfd.
    pub mem_limit_mb: u64,
}

fn limit(what: &'static str, r: Resource, value: u64) -> Result<(), SandboxError> {
    setrlimit(r, value, value).map_err(|source| SandboxError::Limit { what, source })
}

/// Confines this worker. Every step only takes something away, and none can be undone by
/// the worker afterwards (hard limits are lowered together with soft ones).
pub fn confine(c: Confinement) -> Result<(), SandboxError> {
    // No core file (it would hold the images of the job that crashed it) and no ptrace by
    // other workers of the same uid.
    limit("RLIMIT_CORE", Resource::RLIMIT_CORE, 0)?;
    nix::sys::prctl::set_dumpable(false).map_err(|source| SandboxError::Prctl {
        what: "make the worker undumpable",
        source,
    })?;
    // No more fds than a job needs: it cannot hoard descriptors or open many files.
    limit("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE, WORKER_NOFILE)?;
    // Files: a worker writes none, but an output too large for its slot goes into a memfd
    // it creates, and ftruncate and write on a memfd are held to RLIMIT_FSIZE like any file
    // (a 0 limit fails them with EFBIG and SIGXFSZ). The output lives in the worker's own
    // memory first, so it can never exceed the memory cap: that is the limit.
    let fsize = match c.mem_limit_mb {
        0 => RLIM_INFINITY,
        mb => mb.saturating_mul(1 << 20),
    };
    limit("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE, fsize)?;
    // Last: no execve can ever give this process more privileges (set-uid binaries, file
    // capabilities), and it is the precondition for an unprivileged seccomp filter.
    nix::sys::prctl::set_no_new_privs().map_err(|source| SandboxError::Prctl {
        what: "set PR_SET_NO_NEW_PRIVS",
        source,
    })?;
    Ok(())
}
