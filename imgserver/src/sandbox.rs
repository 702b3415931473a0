//! Least privilege for the processes that parse hostile images, and the one step the master
//! takes for itself: what a compromised worker can no longer do.
//!
//! Trust boundary: between a worker (untrusted once it has touched an image) and everything
//! else on the machine, the master first. A worker calls [`confine`] after its set-up (ring
//! and stats mapped, address-space limit set) and before it says Ready — including, when the
//! master runs as root, the switch to the unprivileged `--worker-user` — and the master calls
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
    #[error("cannot switch to uid {uid} gid {gid}: {what}: {source}")]
    Identity {
        uid: u32,
        gid: u32,
        what: &'static str,
        source: nix::Error,
    },
    #[error("still able to regain root after switching to uid {0}")]
    RegainedRoot(u32),
    #[error("the master exited while this worker changed its identity")]
    Orphaned,
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
    /// The uid and gid to switch to (`None`: keep ours).
    pub run_as: Option<(u32, u32)>,
    /// The master, to which the parent-death signal ties us.
    pub master: nix::unistd::Pid,
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
    if let Some((uid, gid)) = c.run_as {
        drop_to(uid, gid, c.master)?;
    }
    // Last: no execve can ever give this process more privileges (set-uid binaries, file
    // capabilities), and it is the precondition for an unprivileged seccomp filter.
    nix::sys::prctl::set_no_new_privs().map_err(|source| SandboxError::Prctl {
        what: "set PR_SET_NO_NEW_PRIVS",
        source,
    })?;
    Ok(())
}

/// Becomes `uid`:`gid` with no supplementary groups, for good: groups first and the uid last,
/// since each step needs the privilege the next takes away. The worker needs nothing of
/// root's after its set-up: it only uses the fds it holds and memfds it creates.
fn drop_to(uid: u32, gid: u32, master: nix::unistd::Pid) -> Result<(), SandboxError> {
    use nix::unistd::{getppid, setgid, setgroups, setuid, Gid, Uid};
    let step = |what: &'static str| {
        move |source| SandboxError::Identity {
            uid,
            gid,
            what,
            source,
        }
    };
    setgroups(&[]).map_err(step("setgroups([])"))?;
    setgid(Gid::from_raw(gid)).map_err(step("setgid"))?;
    setuid(Uid::from_raw(uid)).map_err(step("setuid"))?;
    // As root, setuid sets all three uids; check that no way back is left.
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err(SandboxError::RegainedRoot(uid));
    }
    // The kernel clears the parent-death signal (and resets dumpability) on a change of
    // credentials: set it again, then make sure the master did not die in between.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(step("PR_SET_PDEATHSIG again"))?;
    if getppid() != master {
        return Err(SandboxError::Orphaned);
    }
    nix::sys::prctl::set_dumpable(false).map_err(step("PR_SET_DUMPABLE 0 again"))?;
    Ok(())
}
