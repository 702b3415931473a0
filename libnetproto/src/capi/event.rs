//! The flat C view of a connection event.
//!
//! Trust boundary: pointers in an event point into the connection's own buffer and stay valid
//! only until the next call on that connection; C callers copy what they keep.

pub use super::wire::np_event_kind;
use crate::conn::Event;
use crate::message::ResultInfo;

/// What the server reports with a job result.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct np_result_info {
    /// Length of the whole result.
    pub total_len: u64,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// 1 png, 2 jpeg, 3 gif, 4 webp, 5 bmp, 6 tiff, 7 avif, 0 unknown.
    pub format: u8,
    /// Queue time in microseconds.
    pub queue_us: u32,
    /// Decode time in microseconds.
    pub decode_us: u32,
    /// Filter time in microseconds.
    pub filter_us: u32,
    /// Encode time in microseconds.
    pub encode_us: u32,
}

impl From<ResultInfo> for np_result_info {
    fn from(i: ResultInfo) -> Self {
        np_result_info {
            total_len: i.total_len,
            width: i.width,
            height: i.height,
            format: i.format,
            queue_us: i.queue_us,
            decode_us: i.decode_us,
            filter_us: i.filter_us,
            encode_us: i.encode_us,
        }
    }
}

impl From<&np_result_info> for ResultInfo {
    fn from(i: &np_result_info) -> Self {
        ResultInfo {
            total_len: i.total_len,
            width: i.width,
            height: i.height,
            format: i.format,
            queue_us: i.queue_us,
            decode_us: i.decode_us,
            filter_us: i.filter_us,
            encode_us: i.encode_us,
        }
    }
}

/// One event. Fields not used by a kind are zero / NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct np_event {
    /// What happened (the fields it uses are listed with each kind).
    pub kind: np_event_kind,
    /// Request the event belongs to (0: the connection).
    pub request_id: u64,
    /// ERROR: error code; BUSY: retry-after ms; SHUTDOWN: grace ms.
    pub code: u32,
    /// Chunked streams: true on the last chunk.
    pub last: bool,
    /// VARIANT_RESULT / VARIANT_ERROR: the variant's 0-based index in the job's variant list.
    /// (Added with feature level 1.1 in what was padding: the struct's size and the other
    /// fields' offsets are unchanged.)
    pub variant: u8,
    /// JOB_SUBMIT / JOB_RESULT: declared total length.
    pub total_len: u64,
    /// Payload bytes (chunk, PING payload, STATS body) or NULL.
    pub data: *const u8,
    /// Length of `data`.
    pub data_len: usize,
    /// UTF-8, not NUL-terminated.
    pub text: *const u8,
    /// Length of `text`.
    pub text_len: usize,
    /// JOB_RESULT: what the server reports with the result.
    pub info: np_result_info,
    /// SERVER_KEY: the server's static public key.
    pub server_key: [u8; 32],
}

impl np_event {
    pub(crate) fn from_event(e: &Event<'_>) -> np_event {
        use np_event_kind::*;
        let mut out = np_event {
            kind: NP_EVENT_BYE,
            request_id: 0,
            code: 0,
            last: false,
            variant: 0,
            total_len: 0,
            data: std::ptr::null(),
            data_len: 0,
            text: std::ptr::null(),
            text_len: 0,
            info: np_result_info::default(),
            server_key: [0; 32],
        };
        match *e {
            Event::ServerKey { key } => {
                out.kind = NP_EVENT_SERVER_KEY;
                out.server_key = key;
            }
            Event::Ready { .. } => out.kind = NP_EVENT_READY,
            Event::LoggedIn { user } => {
                out.kind = NP_EVENT_LOGGED_IN;
                out.text = user.as_ptr();
                out.text_len = user.len();
            }
            Event::JobSubmit {
                request_id,
                total_len,
                spec,
                data: d,
                last,
            } => {
                set_data(&mut out, d);
                out.kind = NP_EVENT_JOB_SUBMIT;
                out.request_id = request_id;
                out.total_len = total_len;
                out.text = spec.as_ptr();
                out.text_len = spec.len();
                out.last = last;
            }
            Event::JobSubmitMulti {
                request_id,
                total_len,
                variants,
                data: d,
                last,
            } => {
                set_data(&mut out, d);
                out.kind = NP_EVENT_JOB_SUBMIT_MULTI;
                out.request_id = request_id;
                out.total_len = total_len;
                out.text = variants.as_ptr();
                out.text_len = variants.len();
                out.last = last;
            }
            Event::VariantResult {
                request_id,
                index,
                info,
                data: d,
                last,
            } => {
                set_data(&mut out, d);
                out.kind = NP_EVENT_VARIANT_RESULT;
                out.request_id = request_id;
                out.variant = index;
                out.total_len = info.total_len;
                out.info = info.into();
                out.last = last;
            }
            Event::VariantError {
                request_id,
                index,
                code,
                message,
            } => {
                out.kind = NP_EVENT_VARIANT_ERROR;
                out.request_id = request_id;
                out.variant = index;
                out.code = code as u32;
                out.text = message.as_ptr();
                out.text_len = message.len();
            }
            Event::JobData {
                request_id,
                data: d,
                last,
            } => {
                set_data(&mut out, d);
                out.kind = NP_EVENT_JOB_DATA;
                out.request_id = request_id;
                out.last = last;
            }
            Event::JobResult {
                request_id,
                info,
                data: d,
                last,
            } => {
                set_data(&mut out, d);
                out.kind = NP_EVENT_JOB_RESULT;
                out.request_id = request_id;
                out.total_len = info.total_len;
                out.info = info.into();
                out.last = last;
            }
            Event::ResultData {
                request_id,
                data: d,
                last,
            } => {
                set_data(&mut out, d);
                out.kind = NP_EVENT_RESULT_DATA;
                out.request_id = request_id;
                out.last = last;
            }
            Event::Error {
                request_id,
                code,
                message,
            } => {
                out.kind = NP_EVENT_ERROR;
                out.request_id = request_id;
                out.code = code as u32;
                out.text = message.as_ptr();
                out.text_len = message.len();
            }
            Event::Busy {
                request_id,
                retry_after_ms,
            } => {
                out.kind = NP_EVENT_BUSY;
                out.request_id = request_id;
                out.code = retry_after_ms;
            }
            Event::Ping {
                request_id,
                payload,
            } => {
                set_data(&mut out, payload);
                out.kind = NP_EVENT_PING;
                out.request_id = request_id;
            }
            Event::Pong {
                request_id,
                payload,
            } => {
                set_data(&mut out, payload);
                out.kind = NP_EVENT_PONG;
                out.request_id = request_id;
            }
            Event::StatsRequest { request_id } => {
                out.kind = NP_EVENT_STATS_REQUEST;
                out.request_id = request_id;
            }
            Event::Stats { request_id, body } => {
                set_data(&mut out, body);
                out.kind = NP_EVENT_STATS;
                out.request_id = request_id;
            }
            Event::Shutdown { grace_ms } => {
                out.kind = NP_EVENT_SHUTDOWN;
                out.code = grace_ms;
            }
            Event::Bye => out.kind = NP_EVENT_BYE,
            Event::RateLimited { request_id } => {
                out.kind = NP_EVENT_RATE_LIMITED;
                out.request_id = request_id;
            }
            Event::Probe { status } => {
                out.kind = NP_EVENT_PROBE;
                out.code = status.to_byte().into();
            }
            Event::Discarded {
                request_id,
                len,
                last,
            } => {
                out.kind = NP_EVENT_DISCARDED;
                out.request_id = request_id;
                out.data_len = len;
                out.last = last;
            }
        }
        out
    }
}

// The 1.1 field `variant` sits in what was padding after `last`: a caller built against the
// 1.0 header allocates the same size and finds every other field where it was.
const _: () = {
    assert!(std::mem::size_of::<np_event>() == 136);
    assert!(std::mem::offset_of!(np_event, total_len) == 24);
    assert!(std::mem::offset_of!(np_event, variant) == 21);
};

fn set_data(out: &mut np_event, d: &[u8]) {
    out.data = d.as_ptr();
    out.data_len = d.len();
}
