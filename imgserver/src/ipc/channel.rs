//! Sending and receiving one IPC message with attached file descriptors (SCM_RIGHTS).
//!
//! Trust boundary: received control data is checked for truncation (MSG_CTRUNC: fds were
//! dropped) and the datagram for truncation (MSG_TRUNC); received fds are close-on-exec
//! (MSG_CMSG_CLOEXEC) and owned (`OwnedFd`) from the moment they arrive, so none leaks into a
//! child or outlives its use.
#![allow(unsafe_code)]

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use thiserror::Error;

use super::msg::{Msg, MsgError, MSG_LEN};

/// Most fds one message carries (Init: ring + stats).
pub const MAX_FDS: usize = 2;

#[derive(Debug, Error)]
pub enum ChannelError {
    #[error("peer closed the channel")]
    Closed,
    #[error("no message ready")]
    WouldBlock,
    #[error("message truncated (MSG_TRUNC)")]
    Truncated,
    #[error("file descriptors dropped (MSG_CTRUNC)")]
    FdsTruncated,
    #[error("unexpected control message")]
    BadControl,
    #[error("bad message: {0}")]
    Msg(#[from] MsgError),
    #[error("socket error: {0}")]
    Os(#[from] Errno),
}

/// Sends one message with `fds` attached. The socket may be blocking or not; a full
/// non-blocking socket yields `WouldBlock` (the caller treats the worker as stuck).
pub fn send(sock: BorrowedFd<'_>, msg: &Msg, fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
    let buf = msg.encode();
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&buf)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) if n == MSG_LEN => return Ok(()),
            Ok(_) => return Err(ChannelError::Truncated),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(ChannelError::WouldBlock),
            Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => return Err(ChannelError::Closed),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message and the fds attached to it.
pub fn recv(sock: BorrowedFd<'_>) -> Result<(Msg, Vec<OwnedFd>), ChannelError> {
    // One byte more than a message, so an oversized datagram shows up as a length error even
    // on kernels that do not report MSG_TRUNC for SEQPACKET.
    let mut buf = [0u8; MSG_LEN + 1];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let r = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match r {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(ChannelError::WouldBlock),
            Err(Errno::ECONNRESET) => return Err(ChannelError::Closed),
            Err(e) => return Err(e.into()),
        };
        // Take ownership of every fd first, so each is closed on every error path below.
        let mut fds = Vec::new();
        let mut bad_control = false;
        let cmsgs = msg.cmsgs();
        if let Ok(iter) = cmsgs {
            for c in iter {
                match c {
                    ControlMessageOwned::ScmRights(raw) => {
                        for fd in raw {
                            // SAFETY: the kernel just installed this descriptor in our table
                            // for us; nothing else owns it.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                    _ => bad_control = true,
                }
            }
        }
        let flags = msg.flags;
        let n = msg.bytes;
        if flags.contains(MsgFlags::MSG_CTRUNC) || cmsgs.is_err() {
            return Err(ChannelError::FdsTruncated);
        }
        if flags.contains(MsgFlags::MSG_TRUNC) || n > MSG_LEN {
            return Err(ChannelError::Truncated);
        }
        if n == 0 {
            return Err(ChannelError::Closed);
        }
        if bad_control {
            return Err(ChannelError::BadControl);
        }
        return Ok((Msg::decode(&buf[..n])?, fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn message_with_fds_crosses_a_socketpair() {
        let (a, b) = pair();
        let mut f = tempfile_in_memory();
        f.write_all(b"shared bytes").unwrap();
        send(a.as_fd(), &Msg::Ready { pid: 7 }, &[f.as_fd()]).unwrap();
        let (m, fds) = recv(b.as_fd()).unwrap();
        assert_eq!(m, Msg::Ready { pid: 7 });
        assert_eq!(fds.len(), 1);
        // The received fd refers to the same open file, and is close-on-exec.
        let flags = nix::fcntl::fcntl(&fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & libc::FD_CLOEXEC != 0);
        let mut g = std::fs::File::from(fds.into_iter().next().unwrap());
        g.rewind().unwrap();
        let mut s = String::new();
        g.read_to_string(&mut s).unwrap();
        assert_eq!(s, "shared bytes");
    }

    #[test]
    fn eof_and_garbage_are_errors() {
        let (a, b) = pair();
        nix::unistd::write(&a, b"short").unwrap();
        assert!(matches!(
            recv(b.as_fd()),
            Err(ChannelError::Msg(MsgError::Length(5)))
        ));
        nix::unistd::write(&a, &[0u8; MSG_LEN + 100]).unwrap();
        assert!(matches!(recv(b.as_fd()), Err(ChannelError::Truncated)));
        drop(a);
        assert!(matches!(recv(b.as_fd()), Err(ChannelError::Closed)));
    }

    #[test]
    fn too_many_fds_are_reported_not_leaked() {
        let (a, b) = pair();
        let files: Vec<std::fs::File> = (0..4).map(|_| tempfile_in_memory()).collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        send(a.as_fd(), &Msg::Ready { pid: 1 }, &fds).unwrap();
        assert!(matches!(recv(b.as_fd()), Err(ChannelError::FdsTruncated)));
    }

    fn tempfile_in_memory() -> std::fs::File {
        let fd =
            nix::sys::memfd::memfd_create(c"test", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        std::fs::File::from(fd)
    }
}
