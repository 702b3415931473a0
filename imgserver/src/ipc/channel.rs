//! A master↔worker channel typed by direction, in the manner of sozu's `Channel<Tx, Rx>`:
//! the master holds a [`MasterChannel`] (sends [`ToWorker`], receives [`ToMaster`]), a worker a
//! [`WorkerChannel`], so sending a message the wrong way does not compile. One message at a
//! time, with attached file descriptors (SCM_RIGHTS).
//!
//! Trust boundary: received control data is checked for truncation (MSG_CTRUNC: fds were
//! dropped) and the datagram for truncation (MSG_TRUNC); received fds are close-on-exec
//! (MSG_CMSG_CLOEXEC) and owned (`OwnedFd`) from the moment they arrive, so none leaks into a
//! child or outlives its use.
#![allow(unsafe_code)]

use std::io::{IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use thiserror::Error;

use super::msg::{Message, MsgError, ToMaster, ToWorker, MSG_LEN};

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

/// One end of a SOCK_SEQPACKET socketpair that sends `Tx` and receives `Rx`.
#[derive(Debug)]
pub struct Channel<Tx, Rx> {
    sock: OwnedFd,
    _dir: PhantomData<fn(Tx) -> Rx>,
}

/// The master's end of a worker's channel.
pub type MasterChannel = Channel<ToWorker, ToMaster>;
/// A worker's end of its channel.
pub type WorkerChannel = Channel<ToMaster, ToWorker>;

impl<Tx: Message, Rx: Message> Channel<Tx, Rx> {
    pub fn new(sock: OwnedFd) -> Self {
        Channel {
            sock,
            _dir: PhantomData,
        }
    }

    /// Sends one message with `fds` attached. The socket may be blocking or not; a full
    /// non-blocking socket yields `WouldBlock` (the caller treats the worker as stuck).
    pub fn send(&self, msg: &Tx, fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        send_bytes(self.sock.as_fd(), &msg.encode(), fds)
    }

    /// Receives one message and the fds attached to it.
    pub fn recv(&self) -> Result<(Rx, Vec<OwnedFd>), ChannelError> {
        let mut buf = [0u8; MSG_LEN + 1];
        let (n, fds) = recv_bytes(self.sock.as_fd(), &mut buf)?;
        // The fds are owned already: an undecodable message closes them on return.
        Ok((Rx::decode(&buf[..n])?, fds))
    }

    /// Makes receiving non-blocking (the master's end, watched by epoll).
    pub fn set_nonblocking(&self) -> Result<(), ChannelError> {
        nix::fcntl::fcntl(
            &self.sock,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        Ok(())
    }
}

impl<Tx, Rx> AsFd for Channel<Tx, Rx> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

fn send_bytes(
    sock: BorrowedFd<'_>,
    buf: &[u8; MSG_LEN],
    fds: &[BorrowedFd<'_>],
) -> Result<(), ChannelError> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(buf)],
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

/// Receives one datagram into `buf` (one byte more than a message, so an oversized datagram
/// shows up as a length error even on kernels that do not report MSG_TRUNC for SEQPACKET)
/// and the fds attached to it; returns the datagram's length.
fn recv_bytes(
    sock: BorrowedFd<'_>,
    buf: &mut [u8; MSG_LEN + 1],
) -> Result<(usize, Vec<OwnedFd>), ChannelError> {
    let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
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
        return Ok((n, fds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::msg::{Done, Init, Job, Ready};
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::io::{Read, Seek, Write};

    /// The master's end and the worker's end of one channel.
    fn pair() -> (MasterChannel, WorkerChannel) {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        (Channel::new(a), Channel::new(b))
    }

    fn read_all(fd: OwnedFd) -> String {
        let mut g = std::fs::File::from(fd);
        g.rewind().unwrap();
        let mut s = String::new();
        g.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn message_with_fds_crosses_a_socketpair() {
        let (master, worker) = pair();
        let mut f = tempfile_in_memory();
        f.write_all(b"shared bytes").unwrap();
        worker
            .send(&ToMaster::Ready(Ready { pid: 7, sandbox: 0 }), &[f.as_fd()])
            .unwrap();
        let (m, fds) = master.recv().unwrap();
        assert_eq!(m, ToMaster::Ready(Ready { pid: 7, sandbox: 0 }));
        assert_eq!(fds.len(), 1);
        // The received fd refers to the same open file, and is close-on-exec.
        let flags = nix::fcntl::fcntl(&fds[0], nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & libc::FD_CLOEXEC != 0);
        assert_eq!(read_all(fds.into_iter().next().unwrap()), "shared bytes");
    }

    #[test]
    fn both_directions_carry_their_own_messages() {
        let (master, worker) = pair();
        let (ring, stats) = (tempfile_in_memory(), tempfile_in_memory());
        let init = ToWorker::Init(Init {
            index: 1,
            slots: 8,
            slot_size: 4096,
            deadline_ms: 500,
        });
        master.send(&init, &[ring.as_fd(), stats.as_fd()]).unwrap();
        let (m, fds) = worker.recv().unwrap();
        assert_eq!((m, fds.len()), (init, 2));
        let job = ToWorker::Job(Job {
            job: 3,
            slot: 2,
            generation: 9,
            input_len: 10,
            variants: 0,
            spec: "grayscale".into(),
        });
        master.send(&job, &[]).unwrap();
        let (m, fds) = worker.recv().unwrap();
        assert_eq!((m, fds.len()), (job, 0));
        let mut out = tempfile_in_memory();
        out.write_all(b"result").unwrap();
        let done = ToMaster::Done(Done {
            job: 3,
            in_memfd: true,
            output_len: 6,
            ..Done::default()
        });
        worker.send(&done, &[out.as_fd()]).unwrap();
        let (m, fds) = master.recv().unwrap();
        assert_eq!(m, done);
        assert_eq!(read_all(fds.into_iter().next().unwrap()), "result");
    }

    #[test]
    fn a_message_of_the_wrong_direction_is_refused_and_its_fds_closed() {
        // Only a peer that bypasses the typed channel can do this; the tag check catches it.
        let (master, worker) = pair();
        let wrong = ToWorker::Job(Job {
            job: 1,
            slot: 0,
            generation: 0,
            input_len: 0,
            variants: 0,
            spec: "noop".into(),
        });
        let f = tempfile_in_memory();
        send_bytes(worker.as_fd(), &wrong.encode(), &[f.as_fd()]).unwrap();
        assert!(matches!(
            master.recv(),
            Err(ChannelError::Msg(MsgError::Tag(3)))
        ));
    }

    #[test]
    fn eof_and_garbage_are_errors() {
        let (master, worker) = pair();
        nix::unistd::write(&worker, b"short").unwrap();
        assert!(matches!(
            master.recv(),
            Err(ChannelError::Msg(MsgError::Length(5)))
        ));
        nix::unistd::write(&worker, &[0u8; MSG_LEN + 100]).unwrap();
        assert!(matches!(master.recv(), Err(ChannelError::Truncated)));
        let mut unknown = [0u8; MSG_LEN];
        unknown[0] = 77;
        nix::unistd::write(&worker, &unknown).unwrap();
        assert!(matches!(
            master.recv(),
            Err(ChannelError::Msg(MsgError::Tag(77)))
        ));
        drop(worker);
        assert!(matches!(master.recv(), Err(ChannelError::Closed)));
    }

    #[test]
    fn a_non_blocking_end_with_nothing_to_read_would_block() {
        let (master, _worker) = pair();
        master.set_nonblocking().unwrap();
        assert!(matches!(master.recv(), Err(ChannelError::WouldBlock)));
    }

    #[test]
    fn too_many_fds_are_reported_not_leaked() {
        let (master, worker) = pair();
        let files: Vec<std::fs::File> = (0..4).map(|_| tempfile_in_memory()).collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        worker
            .send(&ToMaster::Ready(Ready { pid: 1, sandbox: 0 }), &fds)
            .unwrap();
        assert!(matches!(master.recv(), Err(ChannelError::FdsTruncated)));
    }

    fn tempfile_in_memory() -> std::fs::File {
        let fd =
            nix::sys::memfd::memfd_create(c"test", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        std::fs::File::from(fd)
    }
}
