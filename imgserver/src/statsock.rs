//! How `imgserver stats` reaches the stats page of a master that is not dumpable: the master
//! listens on an abstract Unix socket named after its pid and hands the page's memfd, by
//! SCM_RIGHTS, to any local process of its own user (or root) that connects.
//!
//! Why: the master calls `PR_SET_DUMPABLE 0` so a worker of the same uid cannot ptrace it or
//! read its memory; that also closes `/proc/PID/fd` to every process of that uid without
//! CAP_SYS_PTRACE, which is how `imgserver stats` used to open the page. An abstract socket
//! has no file, so nothing is left behind after `kill -9`.
//!
//! Trust boundary: local processes. The master checks the peer's uid (SO_PEERCRED) before
//! handing anything, and hands only the stats page (read-only use by design; a holder could
//! write counters, which is what the same user could do to its own server anyway). The reader
//! checks that the socket's owner is the pid named in the pid file, so a squatter on the
//! name cannot feed it a page of its own.
#![allow(unsafe_code)]

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

use log::{debug, warn};
use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt::PeerCredentials, ControlMessage, ControlMessageOwned,
    MsgFlags,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StatSockError {
    #[error("no stats socket for pid {pid}: {source}")]
    Connect { pid: u32, source: std::io::Error },
    #[error("the stats socket of pid {want} belongs to pid {got}")]
    WrongOwner { want: u32, got: i32 },
    #[error("the server sent no stats page")]
    NoPage,
    #[error("stats socket: {0}")]
    Os(#[from] Errno),
    #[error("stats socket: {0}")]
    Io(#[from] std::io::Error),
}

/// The abstract socket name of the master with this pid.
fn address(pid: u32) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("imgserver-stats.{pid}"))
}

/// Binds this master's socket and serves it from a thread of its own, for the life of the
/// process: each connection of an allowed user gets one message carrying `page`.
pub fn serve(page: OwnedFd) -> std::io::Result<()> {
    let listener = UnixListener::bind_addr(&address(std::process::id())?)?;
    let me = nix::unistd::geteuid().as_raw();
    std::thread::Builder::new()
        .name("stats-socket".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                match getsockopt(&conn, PeerCredentials) {
                    Ok(c) if c.uid() == me || c.uid() == 0 => {
                        if let Err(e) = send_page(&conn, &page) {
                            debug!("stats socket: {e}");
                        }
                    }
                    Ok(c) => warn!(
                        "stats socket: refused pid {} of uid {} (not this server's user)",
                        c.pid(),
                        c.uid()
                    ),
                    Err(e) => debug!("stats socket: {e}"),
                }
            }
        })?;
    Ok(())
}

fn send_page(conn: &UnixStream, page: &OwnedFd) -> Result<(), Errno> {
    let raw = [page.as_raw_fd()];
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(b"S")],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

/// Asks the master with pid `pid` for its stats page.
pub fn fetch(pid: u32) -> Result<OwnedFd, StatSockError> {
    let conn = UnixStream::connect_addr(&address(pid)?)
        .map_err(|source| StatSockError::Connect { pid, source })?;
    // A stopped or wedged master must not hang `imgserver health`, whose job is to say so.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    let owner = getsockopt(&conn, PeerCredentials)?.pid();
    if owner != pid as i32 {
        return Err(StatSockError::WrongOwner {
            want: pid,
            got: owner,
        });
    }
    let mut byte = [0u8; 1];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut byte)];
    let msg = recvmsg::<()>(
        conn.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut cmsg_buf),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    // Own every fd that arrived before looking at anything else, so none leaks.
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel just installed this descriptor in our table for
                    // us (SCM_RIGHTS); nothing else in this process owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() != 1 {
        return Err(StatSockError::NoPage);
    }
    fds.pop().ok_or(StatSockError::NoPage)
}
