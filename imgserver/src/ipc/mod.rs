//! Master ↔ worker IPC: fixed-size messages over one SOCK_SEQPACKET socketpair per worker,
//! with file descriptors (the shared ring, the stats page, oversize job buffers) passed by
//! SCM_RIGHTS. No image bytes cross these sockets; they live in shared memory.

pub mod channel;
pub mod msg;
