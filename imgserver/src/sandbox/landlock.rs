//! The worker's Landlock domain: no file, no TCP, no abstract socket or signal outside it.
//!
//! Trust boundary: a layer under the seccomp allow-list and independent of it. Landlock is an
//! unprivileged LSM: a ruleset that handles every access right and grants none means the
//! worker can open no path (read, write, create, execute, truncate, ioctl on devices), bind
//! or connect no TCP port, connect to no abstract Unix socket (the master's stats socket is
//! one) and signal no process outside its own domain, the master included. What it already
//! holds (its channel, stderr, memfds) keeps working. On a kernel without Landlock, or with an
//! older ABI, the crate's best-effort mode enforces what the kernel knows and the report says
//! which ABI that was.

use landlock::{
    Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetStatus, Scope, ABI,
};

use super::SandboxError;

/// The ABI whose rights the ruleset asks for: 6 is the first with scopes (abstract sockets,
/// signals); 4 brought TCP, 3 truncate, 5 device ioctls.
const WANTED: ABI = ABI::V6;

/// What the kernel enforced: the ABI version (0: none) and whether that is all we asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    pub abi: u32,
    pub full: bool,
}

/// Restricts this process (and any child, though a worker can start none) for good.
pub fn restrict() -> Result<Enforced, SandboxError> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(WANTED))?
        .handle_access(AccessNet::from_all(WANTED))?
        .scope(Scope::from_all(WANTED))?
        .create()?
        .restrict_self()?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
        _ => 0,
    };
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Enforced { abi, full: true },
        RulesetStatus::PartiallyEnforced => Enforced { abi, full: false },
        RulesetStatus::NotEnforced => Enforced {
            abi: 0,
            full: false,
        },
    })
}
