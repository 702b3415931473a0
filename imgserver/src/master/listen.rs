//! The listening socket, created by hand for its backlog.
//!
//! Trust boundary: the first contact with the network. std and mio listen with a backlog of
//! 128 or 1024; a burst of thousands of connects (a load test, a reconnect storm after a
//! restart) would overflow it and stall clients in SYN retransmits, so ask for 4096 (the kernel
//! caps it at net.core.somaxconn).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt::ReuseAddr, AddressFamily, Backlog, SockFlag,
    SockType, SockaddrStorage,
};

const BACKLOG: i32 = 4096;

pub fn bind_listener(addr: SocketAddr) -> std::io::Result<mio::net::TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    // Lets a restarted server bind at once while old connections sit in TIME_WAIT.
    setsockopt(&fd, ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(BACKLOG)?)?;
    Ok(mio::net::TcpListener::from_std(
        std::net::TcpListener::from(fd),
    ))
}
