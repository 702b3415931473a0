//! Unnamed shared memory: sealed memfds mapped MAP_SHARED.
//!
//! memfds have no name in any filesystem, so nothing can be left behind in /dev/shm even
//! after `kill -9`: the memory goes away with the last process holding the fd. Seals stop a
//! peer from shrinking a buffer under another process's mapping (which would SIGBUS it).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::unistd::ftruncate;

/// A new memfd of `len` bytes, sealed against resizing.
pub fn create(name: &std::ffi::CStr, len: u64) -> io::Result<OwnedFd> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    ftruncate(&fd, len as i64)?;
    fcntl(
        &fd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
        ),
    )?;
    Ok(fd)
}

/// Size of a file descriptor's file.
pub fn len(fd: &impl AsFd) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(fd.as_fd())?.st_size as u64)
}

/// Maps `len` bytes of `fd` shared and writable. A raw mapping: no Rust reference covers
/// memory another process may write; accessors hand out slices only for memory the protocol
/// says this process owns at that moment.
pub fn map(fd: &OwnedFd, len: u64) -> io::Result<MmapRaw> {
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
    }
    // The seals guarantee the file cannot shrink below `len` while mapped.
    let actual = self::len(fd)?;
    if actual < len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("memfd is {actual} bytes, expected {len}"),
        ));
    }
    MmapOptions::new().len(len as usize).map_raw(fd)
}

/// Verifies that a received memfd carries the seals we rely on (a worker could pass one it
/// can still shrink, turning our reads into SIGBUS).
pub fn check_sealed(fd: &OwnedFd) -> io::Result<()> {
    let seals = fcntl(fd, FcntlArg::F_GET_SEALS)?;
    let need = (SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_SEAL).bits();
    if seals & need != need {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "memfd is not sealed against shrinking",
        ));
    }
    Ok(())
}
