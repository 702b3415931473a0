//! Least privilege for the processes that parse hostile images, and the one step the master
//! takes for itself: what a compromised worker can no longer do.
//!
//! Trust boundary: between a worker (untrusted once it has touched an image) and everything
//! else on the machine, the master first. A worker calls [`confine`] after its set-up (ring
//! and stats mapped, address-space limit set) and before it says Ready — the limits, the
//! switch to the unprivileged `--worker-user` when the master runs as root, no new
//! privileges, then Landlock (`landlock.rs`) and last the seccomp allow-list (`seccomp.rs`) —
//! and the master calls [`protect_master`] first thing. What each layer stops, and what is
//! left where a kernel lacks one, is in docs/DESIGN.md ("Security").

mod landlock;
pub mod seccomp;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;

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
    #[error("cannot build the seccomp filter: {0}")]
    SeccompBuild(#[from] seccompiler::BackendError),
    #[error("cannot install the seccomp filter: {0}")]
    SeccompApply(seccompiler::Error),
    #[error("cannot set up Landlock: {0}")]
    Landlock(#[from] ::landlock::RulesetError),
}

/// The kernel-enforced layers a worker applies on top of the limits and the identity switch,
/// chosen with `--sandbox` (both by default; `none` is for measuring and debugging only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    pub seccomp: bool,
    pub landlock: bool,
}

impl Default for Layers {
    fn default() -> Self {
        Layers {
            seccomp: true,
            landlock: true,
        }
    }
}

impl FromStr for Layers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut l = Layers {
            seccomp: false,
            landlock: false,
        };
        if s == "none" {
            return Ok(l);
        }
        for part in s.split(',') {
            match part.trim() {
                "seccomp" => l.seccomp = true,
                "landlock" => l.landlock = true,
                other => {
                    return Err(format!(
                    "unknown sandbox layer {other:?}: use a list of seccomp and landlock, or none"
                ))
                }
            }
        }
        Ok(l)
    }
}

impl fmt::Display for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.seccomp, self.landlock) {
            (true, true) => f.write_str("seccomp,landlock"),
            (true, false) => f.write_str("seccomp"),
            (false, true) => f.write_str("landlock"),
            (false, false) => f.write_str("none"),
        }
    }
}

/// What a worker's confinement achieved, reported to the master in its Ready message (before
/// it has seen any input, so it is still the worker's own code speaking).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// The seccomp allow-list is installed.
    pub seccomp: bool,
    /// The Landlock ABI the kernel enforced (0: no Landlock domain).
    pub landlock_abi: u32,
    /// Landlock enforced every right asked for (the kernel knows ABI 6 or later).
    pub landlock_full: bool,
}

impl Report {
    pub fn to_bits(self) -> u32 {
        u32::from(self.seccomp) | u32::from(self.landlock_full) << 1 | self.landlock_abi << 8
    }

    pub fn from_bits(bits: u32) -> Report {
        Report {
            seccomp: bits & 1 != 0,
            landlock_full: bits & 2 != 0,
            landlock_abi: (bits >> 8) & 0xff,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.seccomp {
            "seccomp allow-list on"
        } else {
            "seccomp OFF"
        })?;
        match (self.landlock_abi, self.landlock_full) {
            (0, _) => f.write_str(", Landlock OFF"),
            (abi, true) => write!(
                f,
                ", Landlock ABI {abi} (no files, no TCP, no outside sockets or signals)"
            ),
            (abi, false) => write!(
                f,
                ", Landlock ABI {abi} only (partial: the kernel lacks later rights)"
            ),
        }
    }
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
    /// The kernel-enforced layers to apply.
    pub layers: Layers,
    /// Where a refused system call's number is noted (this worker's stats block).
    pub violation: &'static AtomicU64,
}

fn limit(what: &'static str, r: Resource, value: u64) -> Result<(), SandboxError> {
    setrlimit(r, value, value).map_err(|source| SandboxError::Limit { what, source })
}

/// Confines this worker. Every step only takes something away, and none can be undone by
/// the worker afterwards (hard limits are lowered together with soft ones). A layer the
/// kernel lacks is reported, not fatal; a layer that fails to apply is.
pub fn confine(c: Confinement) -> Result<Report, SandboxError> {
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
    let mut report = Report::default();
    if c.layers.landlock {
        let e = landlock::restrict()?;
        report.landlock_abi = e.abi;
        report.landlock_full = e.full;
    }
    // Last, since every step above makes calls the allow-list refuses.
    if c.layers.seccomp {
        match seccomp::install(c.violation) {
            Ok(()) => report.seccomp = true,
            // A kernel built without seccomp filters: reported as off, like a missing Landlock.
            Err(SandboxError::SeccompApply(seccompiler::Error::Seccomp(e)))
                if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_parse_print_and_refuse_unknown_names() {
        assert_eq!("seccomp,landlock".parse::<Layers>(), Ok(Layers::default()));
        for text in ["seccomp,landlock", "seccomp", "landlock", "none"] {
            assert_eq!(text.parse::<Layers>().unwrap().to_string(), text);
        }
        assert_eq!(
            "landlock, seccomp".parse::<Layers>().unwrap(),
            Layers::default()
        );
        let err = "seccomp,apparmor".parse::<Layers>().unwrap_err();
        assert!(err.contains("unknown sandbox layer \"apparmor\""), "{err}");
    }

    #[test]
    fn a_report_survives_its_trip_in_ready_and_says_what_is_missing() {
        for r in [
            Report::default(),
            Report {
                seccomp: true,
                landlock_abi: 7,
                landlock_full: true,
            },
            Report {
                seccomp: false,
                landlock_abi: 3,
                landlock_full: false,
            },
        ] {
            assert_eq!(Report::from_bits(r.to_bits()), r);
        }
        let partial = Report {
            seccomp: true,
            landlock_abi: 3,
            landlock_full: false,
        };
        assert_eq!(
            partial.to_string(),
            "seccomp allow-list on, Landlock ABI 3 only (partial: the kernel lacks later rights)"
        );
        assert_eq!(Report::default().to_string(), "seccomp OFF, Landlock OFF");
    }
}
