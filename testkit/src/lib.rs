//! testkit: the one harness behind the end-to-end suites of imgserver and imgclient.
//!
//! It starts the real `imgserver` binary (temporary state directory, one user, port 0), waits
//! until it listens and its workers are ready, talks to it through netproto-sys as any client
//! does, runs the real `imgclient` binary, builds hostile and sample images, and looks at the
//! processes from outside through /proc. Reports (`imgserver stats --json`,
//! `imgclient bench --json`) are parsed with serde into typed values.
//!
//! Trust boundary: test code only. It sits outside the server, on the client and local
//! administrator side: it never links imgserver or imgclient internals, so their insides can
//! change without breaking the suites. Every wait polls a condition with a deadline
//! ([`wait_until`]); a test that must let time pass says so where it does.

pub mod client;
pub mod haproxy;
pub mod images;
pub mod imgclient;
pub mod peer;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod server;
pub mod wait;

pub use client::{
    connect, connect_as, read_until_close, run_job, send_job, wait_job, Outcome, RawSession,
};
pub use haproxy::{Backend, Haproxy};
pub use images::{
    batch_inputs, crc32, files_in, png_bomb, png_chunk, sample, samples, small_images, TempDir,
};
pub use imgclient::{imgclient_bin, BenchRun, ImgClient};
pub use nix::sys::signal::Signal;
pub use peer::{connect_from, login_from, login_over, loopback, Login};
pub use procs::{
    children, cpu_time, environ, fds, kill, memfd_inodes, pids_in_group, pids_with_env,
    process_alive, process_group, raise_fd_limit, rss_kb, socket_table, status_field, Fd, FdTarget,
    SocketKind,
};
pub use proxy::{proxy_v2, proxy_v2_for, proxy_v2_local, proxy_v2_tcp4, PROXY_V2_SIGNATURE};
pub use report::{BenchReport, Histogram, Stats};
pub use server::{
    add_user_to_file, imgserver_bin, imgserver_failpoints_bin, Server, ServerBuilder,
};
pub use wait::{wait_some, wait_until, Timeout};

/// The user every test server is created with.
pub const USER: &str = "tester";
/// Its password.
pub const PASSWORD: &str = "test-password";

/// `make soak` sets IMGSERVER_SOAK=1: the fault and hostile-peer tests then run their long
/// variants (more connections, longer runs, more rounds).
pub fn soak() -> bool {
    std::env::var("IMGSERVER_SOAK").is_ok_and(|v| v == "1")
}
