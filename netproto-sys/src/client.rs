//! An owned blocking client session (what imgclient's commands and load tester use).

use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use crate::event::{empty_event, Event};
use crate::{check, cstring, ffi, ClientConfig, NpError, Result};

pub struct Client {
    raw: *mut ffi::np_client,
    new_server: bool,
}

// SAFETY: a client session is used by one thread at a time (`&mut self` for every call that
// touches it); the library keeps no thread-affine state in it.
unsafe impl Send for Client {}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client")
    }
}

fn ms(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

impl Client {
    /// Connects, checks the server key against `known_servers` (pinning on first use; `None`
    /// accepts any key), and logs in, within `timeout`.
    pub fn connect(
        addr: &str,
        cfg: &ClientConfig,
        known_servers: Option<&Path>,
        timeout: Duration,
    ) -> Result<Client> {
        let a = cstring(addr)?;
        let ks = known_servers
            .map(|p| cstring(&p.to_string_lossy()))
            .transpose()?;
        let mut raw = std::ptr::null_mut();
        let mut new_server = false;
        // SAFETY: valid strings (or NULL), live config, writable outputs.
        check(unsafe {
            ffi::np_client_connect(
                a.as_ptr(),
                cfg.raw,
                ks.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                ms(timeout),
                &mut raw,
                &mut new_server,
            )
        })?;
        Ok(Client { raw, new_server })
    }

    /// Whether the server's key was pinned by this connection (first contact).
    pub fn is_new_server(&self) -> bool {
        self.new_server
    }

    pub fn server_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        // SAFETY: live handle; `k` writable.
        unsafe { ffi::np_client_server_key(self.raw, k.as_mut_ptr()) };
        k
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the socket stays open as long as the client handle lives, which bounds the
        // returned borrow.
        unsafe { BorrowedFd::borrow_raw(ffi::np_client_fd(self.raw) as RawFd) }
    }

    pub fn send_job(
        &mut self,
        id: u64,
        spec: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
        timeout: Duration,
    ) -> Result<()> {
        let s = cstring(spec)?;
        // SAFETY: live handle; valid string and slice.
        check(unsafe {
            ffi::np_client_send_job(
                self.raw,
                id,
                s.as_ptr(),
                total_len,
                data.as_ptr(),
                data.len(),
                last,
                ms(timeout),
            )
        })
    }

    pub fn send_job_data(
        &mut self,
        id: u64,
        data: &[u8],
        last: bool,
        timeout: Duration,
    ) -> Result<()> {
        // SAFETY: live handle; valid slice.
        check(unsafe {
            ffi::np_client_send_job_data(self.raw, id, data.as_ptr(), data.len(), last, ms(timeout))
        })
    }

    pub fn send_ping(&mut self, id: u64, payload: &[u8], timeout: Duration) -> Result<()> {
        // SAFETY: live handle; valid slice.
        check(unsafe {
            ffi::np_client_send_ping(self.raw, id, payload.as_ptr(), payload.len(), ms(timeout))
        })
    }

    pub fn send_stats_request(&mut self, id: u64, timeout: Duration) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { ffi::np_client_send_stats_request(self.raw, id, ms(timeout)) })
    }

    /// Waits up to `timeout` for the next event. The connection's own timers run meanwhile
    /// (see [`ClientConfig::set_timers`](crate::ClientConfig::set_timers)): a heartbeat PING
    /// with request id 0 goes out after a quiet interval (its PONG comes back as an event),
    /// and a server silent for the dead-peer timeout closes the connection and ends the wait
    /// with `NP_TIMEOUT`; later calls then fail too.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Event<'_>> {
        let mut ev = empty_event();
        // SAFETY: live handle; `ev` writable.
        match unsafe { ffi::np_client_next_event(self.raw, ms(timeout), &mut ev) } {
            // SAFETY: pointers live until the next call on this handle (`&mut self`).
            ffi::NP_OK => Ok(unsafe { Event::from_raw(&ev) }),
            s => Err(NpError::from_status(s)),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: `raw` came from np_client_connect and is closed once.
        unsafe { ffi::np_client_close(self.raw) }
    }
}
