//! The worker's system-call allow-list (seccomp-bpf, compiled by seccompiler) and the SIGSYS
//! handler that turns a refused call into a death the master can name.
//!
//! Trust boundary: installed last in a worker's confinement, before it has seen any image;
//! from then on the kernel checks every system call the worker makes, whatever code makes it.
//! The list holds what decoding, filtering, encoding and the channel need, measured by
//! tracing workers over the sample images, every op and every output format: I/O on fds
//! already held, memory (never executable), memfds for outputs, time, and dying. Everything
//! else (open, socket, connect, execve, ptrace, kill, ioctl, clone...) traps: the handler
//! notes the call's number in the worker's stats block and the worker kills itself with
//! SIGSYS, which the master reports as a sandbox violation.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, Ordering};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule,
};

use super::SandboxError;
use crate::spawn::WORKER_FD;

/// `(number, SYS_name)` pairs (system call numbers are `long`, 64 bits on every target seccompiler knows) from libc's `SYS_*` constants, so the list and the names that logs
/// print cannot disagree.
macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((libc::$name, stringify!($name))),*]
    };
}

/// Allowed with any arguments: none of them reaches anything outside the worker.
const PLAIN: &[(i64, &str)] = syscalls![
    // I/O on what the worker holds: the log (stderr), its job memfds. No open of any kind.
    SYS_read,
    SYS_write,
    SYS_writev,
    SYS_close,
    // Output memfds: created, sized, sealed (F_ADD_SEALS), inputs' seals checked.
    SYS_memfd_create,
    SYS_ftruncate,
    SYS_fcntl,
    SYS_fstat,
    // The allocator and the decoders' buffers.
    SYS_munmap,
    SYS_mremap,
    SYS_brk,
    SYS_madvise,
    // Runtime: uncontended locks, time, a slow job's sleep, hash seeds.
    SYS_futex,
    SYS_sched_yield,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_nanosleep,
    SYS_getrandom,
    SYS_getpid,
    SYS_getppid,
    SYS_gettid,
    // Signals: returning from a handler, masks (abort), the stack-overflow handler's stack.
    SYS_rt_sigreturn,
    SYS_rt_sigprocmask,
    SYS_sigaltstack,
    SYS_restart_syscall,
    // Ending.
    SYS_exit,
    SYS_exit_group,
];

/// Calls a refused call is most likely to be; only used to name one in the log.
const NOTABLE: &[(i64, &str)] = syscalls![
    SYS_open,
    SYS_openat,
    SYS_openat2,
    SYS_creat,
    SYS_socket,
    SYS_socketpair,
    SYS_connect,
    SYS_bind,
    SYS_execve,
    SYS_execveat,
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_kill,
    SYS_tkill,
    SYS_ioctl,
    SYS_clone,
    SYS_clone3,
    SYS_fork,
    SYS_vfork,
    SYS_mmap,
    SYS_mprotect,
    SYS_rt_sigaction,
    SYS_newfstatat,
    SYS_statx,
    SYS_unlink,
    SYS_unlinkat,
    SYS_mkdir,
    SYS_prctl,
    SYS_setuid,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_tgkill,
];

/// The name of system call `nr` on this architecture, when it is one the log can name.
pub fn name(nr: i64) -> Option<&'static str> {
    PLAIN
        .iter()
        .chain(NOTABLE)
        .find(|(n, _)| *n == nr)
        .map(|(_, name)| name.trim_start_matches("SYS_"))
}

fn cond(arg: u8, op: Op, value: u64) -> Result<SeccompCondition, SandboxError> {
    Ok(SeccompCondition::new(arg, Len::Qword, op, value)?)
}

fn rule(conds: Vec<SeccompCondition>) -> Result<Vec<SeccompRule>, SandboxError> {
    Ok(vec![SeccompRule::new(conds)?])
}

/// The filter for a worker whose pid is `pid`.
fn program(pid: u32) -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        PLAIN.iter().map(|(nr, _)| (*nr, Vec::new())).collect();
    let prot_exec = libc::PROT_EXEC as u64;
    // Memory, but never executable: code injected into a buffer stays data.
    for nr in [libc::SYS_mmap, libc::SYS_mprotect] {
        rules.insert(nr, rule(vec![cond(2, Op::MaskedEq(prot_exec), 0)?])?);
    }
    // The channel is the only socket, at a fixed number.
    for nr in [libc::SYS_sendmsg, libc::SYS_recvmsg] {
        rules.insert(nr, rule(vec![cond(0, Op::Eq, WORKER_FD as u64)?])?);
    }
    // fstat as glibc makes it (an fd and an empty path); a path still names a file, but
    // nothing here can open one, so at most a file's existence and metadata are learnt.
    rules.insert(
        libc::SYS_newfstatat,
        rule(vec![cond(3, Op::Eq, libc::AT_EMPTY_PATH as u64)?])?,
    );
    // Signals to itself only (abort raises SIGABRT, the SIGSYS handler re-raises SIGSYS).
    rules.insert(
        libc::SYS_tgkill,
        rule(vec![cond(0, Op::Eq, u64::from(pid))?])?,
    );
    // Handlers may change (abort resets SIGABRT, std's stack-overflow handler resets
    // SIGSEGV), except SIGSYS's: that one stays ours, so a refused call always ends the worker.
    rules.insert(
        libc::SYS_rt_sigaction,
        rule(vec![cond(0, Op::Ne, libc::SIGSYS as u64)?])?,
    );
    let arch = std::env::consts::ARCH.try_into()?;
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, arch)?;
    Ok(filter.try_into()?)
}

/// Where the SIGSYS handler notes the refused call (the worker's stats block), and the ids
/// it signals. Set once, before the handler is installed.
static VIOLATION: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());
static PID: AtomicI32 = AtomicI32::new(0);
static TID: AtomicI32 = AtomicI32::new(0);

/// The start of the kernel's `siginfo_t` as it is filled for SIGSYS on 64-bit Linux
/// (`si_signo`, `si_errno`, `si_code`, padding, then the `_sigsys` member of the union):
/// libc does not expose `si_syscall`.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for a SA_SIGINFO handler, and SigsysInfo
    // mirrors the layout of its first 32 bytes for SIGSYS (the struct is 128 bytes long).
    let nr = unsafe { (*info.cast::<SigsysInfo>()).syscall };
    let slot = VIOLATION.load(Ordering::Relaxed);
    if !slot.is_null() {
        // SAFETY: the pointer is to an AtomicU64 in the stats mapping, which stays mapped
        // for the life of the worker; an atomic store is async-signal-safe.
        unsafe { &*slot }.store(nr as u64 + 1, Ordering::Relaxed);
    }
    // SA_RESETHAND put SIGSYS back to its default action (terminate) and SA_NODEFER left it
    // unblocked, so this signal ends the process at once, with SIGSYS as its cause.
    // SAFETY: tgkill on our own ids (allowed by the filter); plain integers.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            PID.load(Ordering::Relaxed),
            TID.load(Ordering::Relaxed),
            libc::SIGSYS,
        );
        libc::_exit(128 + libc::SIGSYS);
    }
}

/// Installs the allow-list on this (single-threaded) worker; `violation` is where a refused
/// call's number + 1 is noted.
pub fn install(violation: &'static AtomicU64) -> Result<(), SandboxError> {
    let pid = std::process::id();
    let prog = program(pid)?;
    VIOLATION.store(std::ptr::from_ref(violation).cast_mut(), Ordering::Relaxed);
    PID.store(pid as i32, Ordering::Relaxed);
    TID.store(nix::unistd::gettid().as_raw(), Ordering::Relaxed);
    // SAFETY: installing a handler for SIGSYS that only does an atomic store and tgkill
    // (async-signal-safe); a zeroed sigaction with these fields set is valid.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(SandboxError::Prctl {
            what: "install the SIGSYS handler",
            source: nix::Error::last(),
        });
    }
    seccompiler::apply_filter(&prog).map_err(SandboxError::SeccompApply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_compiles_and_names_what_it_refuses() {
        let prog = program(1234).unwrap();
        assert!(prog.len() > PLAIN.len());
        assert_eq!(name(libc::SYS_openat), Some("openat"));
        assert_eq!(name(libc::SYS_write), Some("write"));
        assert_eq!(name(-1), None);
        // The lists overlap nowhere: a call is either allowed plainly or noted as refused
        // (or allowed with conditions, which the program adds itself).
        for (nr, n) in PLAIN {
            assert!(NOTABLE.iter().all(|(m, _)| m != nr), "{n} is in both lists");
        }
    }
}
