//! An owned sans-IO connection handle (what the server's event loop drives).

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::event::{empty_event, Event, ResultInfo};
use crate::{check, cstring, ffi, ClientConfig, ErrorCode, NpError, Result, ServerConfig};

/// Outcome of one non-blocking read into a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    Data(usize),
    WouldBlock,
    /// Poll events before reading more.
    Full,
    Eof,
}

pub struct Conn {
    raw: *mut ffi::np_conn,
}

// SAFETY: a connection is used by one thread at a time (`&mut self` everywhere that mutates);
// the library keeps no thread-local state in it.
unsafe impl Send for Conn {}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

impl Conn {
    pub fn new_server(cfg: &ServerConfig) -> Result<Conn> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: live config handle and writable out-pointer.
        check(unsafe { ffi::np_conn_new_server(cfg.raw, &mut raw) })?;
        Ok(Conn { raw })
    }

    pub fn new_client(cfg: &ClientConfig) -> Result<Conn> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: live config handle and writable out-pointer.
        check(unsafe { ffi::np_conn_new_client(cfg.raw, &mut raw) })?;
        Ok(Conn { raw })
    }

    /// Appends received bytes; returns how many were taken.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize> {
        let mut n = 0;
        // SAFETY: live handle; `data` valid for its length; `n` writable.
        check(unsafe { ffi::np_conn_feed(self.raw, data.as_ptr(), data.len(), &mut n) })?;
        Ok(n)
    }

    /// One non-blocking read from `fd`.
    pub fn read_fd(&mut self, fd: BorrowedFd<'_>) -> Result<ReadStatus> {
        let mut n = 0;
        // SAFETY: live handle; `fd` is open for the call (borrowed).
        match unsafe { ffi::np_conn_read_fd(self.raw, fd.as_raw_fd(), &mut n) } {
            ffi::NP_OK => Ok(ReadStatus::Data(n)),
            ffi::NP_WOULD_BLOCK => Ok(ReadStatus::WouldBlock),
            ffi::NP_INPUT_FULL => Ok(ReadStatus::Full),
            ffi::NP_EOF => Ok(ReadStatus::Eof),
            s => Err(NpError::from_status(s)),
        }
    }

    /// Writes pending output to a non-blocking `fd`; returns the bytes still pending.
    pub fn write_fd(&mut self, fd: BorrowedFd<'_>) -> Result<usize> {
        let mut pending = 0;
        // SAFETY: live handle; `fd` open for the call.
        check(unsafe { ffi::np_conn_write_fd(self.raw, fd.as_raw_fd(), &mut pending) })?;
        Ok(pending)
    }

    pub fn pending_output(&self) -> &[u8] {
        let mut p = std::ptr::null();
        let mut n = 0;
        // SAFETY: live handle, writable outputs; the slice lives until the next &mut call.
        let s = unsafe { ffi::np_conn_pending_output(self.raw, &mut p, &mut n) };
        if s != ffi::NP_OK || n == 0 {
            return &[];
        }
        // SAFETY: the library guarantees `n` readable bytes at `p` until the next call.
        unsafe { std::slice::from_raw_parts(p, n) }
    }

    pub fn consume_output(&mut self, n: usize) {
        // SAFETY: live handle.
        unsafe { ffi::np_conn_consume_output(self.raw, n) };
    }

    /// The next event, `None` if more input is needed, or the fatal error that closed the
    /// connection (flush pending output, then close).
    pub fn poll_event(&mut self) -> Result<Option<Event<'_>>> {
        let mut ev = empty_event();
        // SAFETY: live handle; `ev` writable.
        match unsafe { ffi::np_conn_poll_event(self.raw, &mut ev) } {
            // SAFETY: the event's pointers live until the next call on this handle, which
            // needs `&mut self` and so ends the returned borrow first.
            ffi::NP_OK => Ok(Some(unsafe { Event::from_raw(&ev) })),
            ffi::NP_NO_EVENT => Ok(None),
            s => Err(NpError::from_status(s)),
        }
    }

    pub fn trust_server_key(&mut self, accept: bool) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { ffi::np_conn_trust_server_key(self.raw, accept) })
    }

    /// Frees buffer memory while nothing is buffered (for connections gone idle).
    pub fn shrink(&mut self) {
        // SAFETY: live handle.
        unsafe { ffi::np_conn_shrink(self.raw) };
    }

    pub fn is_ready(&self) -> bool {
        // SAFETY: live handle.
        unsafe { ffi::np_conn_is_ready(self.raw) }
    }

    pub fn is_closed(&self) -> bool {
        // SAFETY: live handle.
        unsafe { ffi::np_conn_is_closed(self.raw) }
    }

    pub fn user(&self) -> String {
        // SAFETY: live handle; buffers from text_out.
        crate::text_out(|o, c, l| unsafe { ffi::np_conn_user(self.raw, o, c, l) })
            .unwrap_or_default()
    }

    pub fn send_job(
        &mut self,
        id: u64,
        spec: &str,
        total_len: u64,
        data: &[u8],
        last: bool,
    ) -> Result<()> {
        let s = cstring(spec)?;
        // SAFETY: live handle; valid string and slice.
        check(unsafe {
            ffi::np_conn_send_job(
                self.raw,
                id,
                s.as_ptr(),
                total_len,
                data.as_ptr(),
                data.len(),
                last,
            )
        })
    }

    pub fn send_job_data(&mut self, id: u64, data: &[u8], last: bool) -> Result<()> {
        // SAFETY: live handle; valid slice.
        check(unsafe { ffi::np_conn_send_job_data(self.raw, id, data.as_ptr(), data.len(), last) })
    }

    pub fn send_result(
        &mut self,
        id: u64,
        info: &ResultInfo,
        data: &[u8],
        last: bool,
    ) -> Result<()> {
        // SAFETY: live handle; valid struct and slice.
        check(unsafe {
            ffi::np_conn_send_result(self.raw, id, info, data.as_ptr(), data.len(), last)
        })
    }

    pub fn send_result_data(&mut self, id: u64, data: &[u8], last: bool) -> Result<()> {
        // SAFETY: live handle; valid slice.
        check(unsafe {
            ffi::np_conn_send_result_data(self.raw, id, data.as_ptr(), data.len(), last)
        })
    }

    pub fn send_error(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<()> {
        let t = cstring(&text.replace('\0', " "))?;
        // SAFETY: live handle; valid string.
        check(unsafe { ffi::np_conn_send_error(self.raw, id, code as u16, t.as_ptr()) })
    }

    pub fn reject_request(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<()> {
        let t = cstring(&text.replace('\0', " "))?;
        // SAFETY: live handle; valid string.
        check(unsafe { ffi::np_conn_reject_request(self.raw, id, code as u16, t.as_ptr()) })
    }

    pub fn send_busy(&mut self, id: u64, retry_after_ms: u32) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { ffi::np_conn_send_busy(self.raw, id, retry_after_ms) })
    }

    pub fn send_shutdown(&mut self, grace_ms: u32) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { ffi::np_conn_send_shutdown(self.raw, grace_ms) })
    }

    pub fn send_stats(&mut self, id: u64, entries: &[(&str, u64)]) -> Result<()> {
        let names: Vec<std::ffi::CString> = entries
            .iter()
            .map(|(n, _)| cstring(n))
            .collect::<Result<_>>()?;
        let ptrs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let values: Vec<u64> = entries.iter().map(|(_, v)| *v).collect();
        // SAFETY: live handle; both arrays hold entries.len() valid elements.
        check(unsafe {
            ffi::np_conn_send_stats(self.raw, id, ptrs.as_ptr(), values.as_ptr(), entries.len())
        })
    }

    pub fn send_stats_request(&mut self, id: u64) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { ffi::np_conn_send_stats_request(self.raw, id) })
    }

    pub fn send_ping(&mut self, id: u64, payload: &[u8]) -> Result<()> {
        // SAFETY: live handle; valid slice.
        check(unsafe { ffi::np_conn_send_ping(self.raw, id, payload.as_ptr(), payload.len()) })
    }

    pub fn send_bye(&mut self) -> Result<()> {
        // SAFETY: live handle.
        check(unsafe { ffi::np_conn_send_bye(self.raw) })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: `raw` came from np_conn_new_* and is freed once.
        unsafe { ffi::np_conn_free(self.raw) }
    }
}
