//! Events as a Rust enum, borrowed from the handle that produced them.

use crate::ffi;

/// Metadata of a job result.
pub type ResultInfo = ffi::np_result_info;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    ServerKey {
        key: [u8; 32],
    },
    Ready,
    LoggedIn {
        user: &'a str,
    },
    JobSubmit {
        id: u64,
        total_len: u64,
        spec: &'a str,
        data: &'a [u8],
        last: bool,
    },
    /// Server: a multi-output job (feature level 1.1) starts; `variants` is the variant list
    /// (op specs separated by `;`). More input comes as `JobData`.
    JobSubmitMulti {
        id: u64,
        total_len: u64,
        variants: &'a str,
        data: &'a [u8],
        last: bool,
    },
    JobData {
        id: u64,
        data: &'a [u8],
        last: bool,
    },
    JobResult {
        id: u64,
        info: ResultInfo,
        data: &'a [u8],
        last: bool,
    },
    /// Client: variant `index` (0-based) of a multi-output job starts its result; more of it
    /// comes as `ResultData` before any other variant of the job.
    VariantResult {
        id: u64,
        index: u8,
        info: ResultInfo,
        data: &'a [u8],
        last: bool,
    },
    /// Client: variant `index` of a multi-output job failed; the others still come.
    VariantError {
        id: u64,
        index: u8,
        code: u16,
        message: &'a str,
    },
    ResultData {
        id: u64,
        data: &'a [u8],
        last: bool,
    },
    Error {
        id: u64,
        code: u16,
        message: &'a str,
    },
    Busy {
        id: u64,
        retry_after_ms: u32,
    },
    Ping {
        id: u64,
        payload: &'a [u8],
    },
    Pong {
        id: u64,
        payload: &'a [u8],
    },
    StatsRequest {
        id: u64,
    },
    Stats {
        id: u64,
        body: &'a [u8],
    },
    Shutdown {
        grace_ms: u32,
    },
    Bye,
    /// Server: a PING or STATS over the request rate, already answered RATE_LIMITED.
    RateLimited {
        id: u64,
    },
    /// Server: the first frame was PROBE; PROBE_REPLY with `status` (an `NP_PROBE_*`
    /// number) is queued and the connection closed: flush, then close.
    Probe {
        status: u32,
    },
    /// A chunk of a refused stream, dropped.
    Discarded {
        id: u64,
        len: usize,
        last: bool,
    },
}

/// # Safety
/// `p` must be NULL, or valid for `len` readable bytes that nothing writes for `'a`.
unsafe fn bytes<'a>(p: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || p.is_null() {
        &[]
    } else {
        // SAFETY: `p` is non-NULL and `len` non-zero (checked above), and this function's
        // contract makes `p..p+len` readable and unchanged for `'a` (u8: alignment 1).
        unsafe { std::slice::from_raw_parts(p, len) }
    }
}

impl<'a> Event<'a> {
    /// # Safety
    /// The event's pointers must stay valid for `'a` (the library guarantees this until the
    /// next call on the handle, which the callers' `&mut self` borrows enforce).
    pub(crate) unsafe fn from_raw(e: &ffi::np_event) -> Event<'a> {
        // SAFETY: the library sets `data` to NULL or to `data_len` bytes of the handle's
        // buffer, valid for `'a` by this function's contract.
        let data = unsafe { bytes(e.data, e.data_len) };
        // SAFETY: the same for `text`/`text_len`; the text is checked as UTF-8 here rather
        // than trusted (a non-UTF-8 text becomes "").
        let text = std::str::from_utf8(unsafe { bytes(e.text, e.text_len) }).unwrap_or("");
        let id = e.request_id;
        match e.kind {
            ffi::NP_EVENT_SERVER_KEY => Event::ServerKey { key: e.server_key },
            ffi::NP_EVENT_READY => Event::Ready,
            ffi::NP_EVENT_LOGGED_IN => Event::LoggedIn { user: text },
            ffi::NP_EVENT_JOB_SUBMIT => Event::JobSubmit {
                id,
                total_len: e.total_len,
                spec: text,
                data,
                last: e.last,
            },
            ffi::NP_EVENT_JOB_SUBMIT_MULTI => Event::JobSubmitMulti {
                id,
                total_len: e.total_len,
                variants: text,
                data,
                last: e.last,
            },
            ffi::NP_EVENT_VARIANT_RESULT => Event::VariantResult {
                id,
                index: e.variant,
                info: e.info,
                data,
                last: e.last,
            },
            ffi::NP_EVENT_VARIANT_ERROR => Event::VariantError {
                id,
                index: e.variant,
                code: e.code as u16,
                message: text,
            },
            ffi::NP_EVENT_JOB_DATA => Event::JobData {
                id,
                data,
                last: e.last,
            },
            ffi::NP_EVENT_JOB_RESULT => Event::JobResult {
                id,
                info: e.info,
                data,
                last: e.last,
            },
            ffi::NP_EVENT_RESULT_DATA => Event::ResultData {
                id,
                data,
                last: e.last,
            },
            ffi::NP_EVENT_ERROR => Event::Error {
                id,
                code: e.code as u16,
                message: text,
            },
            ffi::NP_EVENT_BUSY => Event::Busy {
                id,
                retry_after_ms: e.code,
            },
            ffi::NP_EVENT_PING => Event::Ping { id, payload: data },
            ffi::NP_EVENT_PONG => Event::Pong { id, payload: data },
            ffi::NP_EVENT_STATS_REQUEST => Event::StatsRequest { id },
            ffi::NP_EVENT_STATS => Event::Stats { id, body: data },
            ffi::NP_EVENT_SHUTDOWN => Event::Shutdown { grace_ms: e.code },
            ffi::NP_EVENT_RATE_LIMITED => Event::RateLimited { id },
            ffi::NP_EVENT_PROBE => Event::Probe { status: e.code },
            ffi::NP_EVENT_DISCARDED => Event::Discarded {
                id,
                len: e.data_len,
                last: e.last,
            },
            _ => Event::Bye,
        }
    }
}

pub(crate) fn empty_event() -> ffi::np_event {
    ffi::np_event {
        kind: 0,
        request_id: 0,
        code: 0,
        last: false,
        variant: 0,
        total_len: 0,
        data: std::ptr::null(),
        data_len: 0,
        text: std::ptr::null(),
        text_len: 0,
        info: ffi::np_result_info::default(),
        server_key: [0; 32],
    }
}
