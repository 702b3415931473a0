//! An owned blocking client session (what imgclient's commands and load tester use).

use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use crate::event::{empty_event, Event};
use crate::{check, cstring, ffi, ClientConfig, NpError, Result};

pub struct Client {
    /// Non-NULL, from np_client_connect, owned by this value and closed only in `Drop`.
    raw: *mut ffi::np_client,
    new_server: bool,
}

// SAFETY: every call that changes the session takes `&mut self`, so moving it to another
// thread cannot make two threads use it at once, and the library keeps no thread-affine state
// in it (its last-error text is per calling thread, read right after each call).
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
        // SAFETY: `a` is a NUL-terminated CString, `ks` one or NULL (the library accepts NULL
        // for "any key"), `cfg.raw` a live config handle (ClientConfig's invariant, borrowed
        // for the call), and `raw`/`new_server` writable locals; none is kept by the call.
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
        // SAFETY: `self.raw` is live (the field's invariant) and only read; `k` is a writable
        // local of exactly the 32 bytes the call writes.
        unsafe { ffi::np_client_server_key(self.raw, k.as_mut_ptr()) };
        k
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `self.raw` is live, so np_client_fd returns the session's open socket (never
        // -1 for a live handle); the library keeps it open until np_client_close, which only
        // Drop calls, and the returned borrow is tied to `&self`, so it cannot outlive it.
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
        // SAFETY: `self.raw` is live (the field's invariant) and `&mut self` makes this the
        // only call on it; `s` is a NUL-terminated CString and `data` a slice valid for its
        // length, both alive for the call.
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

    /// Starts a multi-output job (see `ClientConn::send_job_multi`) and flushes it.
    pub fn send_job_multi(
        &mut self,
        id: u64,
        variants: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
        timeout: Duration,
    ) -> Result<()> {
        let s = cstring(variants)?;
        // SAFETY: `self.raw` is live (the field's invariant) and `&mut self` makes this the
        // only call on it; `s` is a NUL-terminated CString and `data` a slice valid for its
        // length, both alive for the call.
        check(unsafe {
            ffi::np_client_send_job_multi(
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
        // SAFETY: `self.raw` is live and `&mut self` makes this the only call on it; `data` is
        // a slice valid for its length for the call.
        check(unsafe {
            ffi::np_client_send_job_data(self.raw, id, data.as_ptr(), data.len(), last, ms(timeout))
        })
    }

    pub fn send_ping(&mut self, id: u64, payload: &[u8], timeout: Duration) -> Result<()> {
        // SAFETY: `self.raw` is live and `&mut self` makes this the only call on it;
        // `payload` is a slice valid for its length for the call.
        check(unsafe {
            ffi::np_client_send_ping(self.raw, id, payload.as_ptr(), payload.len(), ms(timeout))
        })
    }

    pub fn send_stats_request(&mut self, id: u64, timeout: Duration) -> Result<()> {
        // SAFETY: `self.raw` is live and `&mut self` makes this the only call on it.
        check(unsafe { ffi::np_client_send_stats_request(self.raw, id, ms(timeout)) })
    }

    /// Waits up to `timeout` for the next event. The connection's own timers run meanwhile
    /// (see [`ClientConfig::set_timers`](crate::ClientConfig::set_timers)): a heartbeat PING
    /// with request id 0 goes out after a quiet interval (its PONG comes back as an event),
    /// and a server silent for the dead-peer timeout closes the connection and ends the wait
    /// with `NP_PEER_SILENT`; every later call on this client then fails with it too. A wait
    /// that merely ran out is `NP_TIMEOUT`, and the session stays usable.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Event<'_>> {
        let mut ev = empty_event();
        // SAFETY: `self.raw` is live and `&mut self` makes this the only call on it; `ev` is a
        // writable local np_event.
        match unsafe { ffi::np_client_next_event(self.raw, ms(timeout), &mut ev) } {
            // SAFETY: on NP_OK the event's pointers point into the session's buffer and stay
            // valid until the next call on the handle; the returned Event borrows `&mut self`,
            // so no such call can happen while it lives.
            ffi::NP_OK => Ok(unsafe { Event::from_raw(&ev) }),
            s => Err(NpError::from_status(s)),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: `raw` came from np_client_connect (the field's invariant) and this value
        // owns it; Drop runs once, and borrowed fds and events end with `&self` before it.
        unsafe { ffi::np_client_close(self.raw) }
    }
}
