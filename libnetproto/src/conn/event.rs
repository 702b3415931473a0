//! The events a connection reports, and how one is built from the frame behind it.
//!
//! Trust boundary: an event is only ever built from a frame that `dispatch` already decrypted
//! and validated; its borrowed data points into the receive buffer.

use super::{Conn, Quiet, Side};
use crate::frame::Header;
use crate::limits::{HEADER_LEN, MAX_CHUNK_DATA, TAG_LEN};
use crate::message::{self, JobSubmit, ResultInfo, ServerParams};
use crate::opcode::Opcode;

/// What the peer did, as seen after validation. Borrowed data lives until the next call.
///
/// `request_id` is the id the client chose for a request (0: the connection itself); `last`
/// marks the final chunk of a chunked stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Client: the server proved this static key; answer with [`ClientConn::trust_server_key`](super::ClientConn::trust_server_key).
    ServerKey {
        /// The server's static X25519 public key.
        key: [u8; 32],
    },
    /// Client: login succeeded and the server proved it holds our verifier.
    Ready {
        /// The limits the server announced in the handshake.
        params: ServerParams,
    },
    /// Server: the client logged in.
    LoggedIn {
        /// The user name the client proved the password of.
        user: &'a str,
    },
    /// Server: a job starts, with its first chunk of input.
    JobSubmit {
        /// The job's id.
        request_id: u64,
        /// The input's declared length in bytes.
        total_len: u64,
        /// The op spec text (checked UTF-8, at most `MAX_SPEC_LEN` bytes).
        spec: &'a str,
        /// The first chunk of input.
        data: &'a [u8],
        /// Whether this chunk completes the input.
        last: bool,
    },
    /// Server: a multi-output job (JOB_SUBMIT_MULTI, feature level 1.1) starts, with its first
    /// chunk of input; more comes as [`JobData`](Event::JobData). Answer each variant with
    /// `send_variant_result` (+ `send_result_data`) or `send_variant_error`, or the whole
    /// request with an ERROR or BUSY.
    JobSubmitMulti {
        /// The job's id.
        request_id: u64,
        /// The input's declared length in bytes.
        total_len: u64,
        /// The variant list: op specs separated by `;` (checked UTF-8, at most
        /// `MAX_SPEC_LEN` bytes; the specs are not checked, nor is their count when it is
        /// outside 2..=MAX_VARIANTS, which the caller then refuses with BAD_SPEC).
        variants: &'a str,
        /// The first chunk of input.
        data: &'a [u8],
        /// Whether this chunk completes the input.
        last: bool,
    },
    /// Server: more input for a job.
    JobData {
        /// The job's id.
        request_id: u64,
        /// The chunk.
        data: &'a [u8],
        /// Whether this chunk completes the input.
        last: bool,
    },
    /// Client: a job's result starts, with its first chunk.
    JobResult {
        /// The job's id.
        request_id: u64,
        /// The result's length, size, format and timings.
        info: ResultInfo,
        /// The first chunk of the result.
        data: &'a [u8],
        /// Whether this chunk completes the result.
        last: bool,
    },
    /// Client: one variant of a multi-output job starts its result; more of it comes as
    /// [`ResultData`](Event::ResultData) before any other variant of that request.
    VariantResult {
        /// The job's id.
        request_id: u64,
        /// The variant's 0-based index in the variant list.
        index: u8,
        /// The variant's result length, size, format and timings.
        info: ResultInfo,
        /// The first chunk of the result.
        data: &'a [u8],
        /// Whether this chunk completes the variant's result.
        last: bool,
    },
    /// Client: one variant of a multi-output job failed; the others still come.
    VariantError {
        /// The job's id.
        request_id: u64,
        /// The variant's 0-based index.
        index: u8,
        /// The wire error code.
        code: u16,
        /// The server's explanation.
        message: &'a str,
    },
    /// Client: more of a job's result.
    ResultData {
        /// The job's id.
        request_id: u64,
        /// The chunk.
        data: &'a [u8],
        /// Whether this chunk completes the result.
        last: bool,
    },
    /// The peer sent an ERROR for one request (or, with id 0, for the connection).
    Error {
        /// The request it answers (0: the connection, which is then closed).
        request_id: u64,
        /// The wire error code ([`ErrorCode`](crate::ErrorCode) when known).
        code: u16,
        /// The peer's explanation.
        message: &'a str,
    },
    /// Client: the server refused a request for load.
    Busy {
        /// The refused request.
        request_id: u64,
        /// How long the server suggests waiting before sending it again.
        retry_after_ms: u32,
    },
    /// A PING arrived; the PONG is already queued.
    Ping {
        /// The PING's id, echoed in the PONG.
        request_id: u64,
        /// The payload, echoed in the PONG.
        payload: &'a [u8],
    },
    /// The answer to one of our PINGs (id 0: the connection's own heartbeat).
    Pong {
        /// The PING's id.
        request_id: u64,
        /// The PING's payload, echoed.
        payload: &'a [u8],
    },
    /// Server: the client asks for the counters; answer with `send_stats`.
    StatsRequest {
        /// The request's id.
        request_id: u64,
    },
    /// Raw STATS_REPLY body, already validated; read it with [`message::parse_stats`].
    Stats {
        /// The request it answers.
        request_id: u64,
        /// The encoded name/value pairs.
        body: &'a [u8],
    },
    /// Client: the server is stopping; in-flight jobs may still complete.
    Shutdown {
        /// How long the server keeps serving what is in flight.
        grace_ms: u32,
    },
    /// The peer closed the connection in order.
    Bye,
    /// Server: a PING or STATS_REQUEST over the config's request rate. ERROR RATE_LIMITED
    /// is already queued for it (nothing for request id 0, the heartbeat's); there is
    /// nothing to answer. Reported, as every frame is, so a caller that handles a bounded
    /// number of events per turn bounds the frames too.
    RateLimited {
        /// The refused request.
        request_id: u64,
    },
    /// Server: the connection's first frame was PROBE. The PROBE_REPLY (with the status set
    /// by `set_probe_status`) is queued and the connection is closed: flush, then close.
    Probe {
        /// What the probe was told.
        status: crate::probe::ProbeStatus,
    },
    /// A chunk of a stream that was refused (`reject_request`, `send_busy`), validated and
    /// dropped. Nothing to do; reported for the same reason as `RateLimited`.
    Discarded {
        /// The refused request.
        request_id: u64,
        /// The chunk's size.
        len: usize,
        /// Whether it ended the stream.
        last: bool,
    },
}

impl<S: Side> Conn<S> {
    pub(super) fn build_event(&self, h: Header, start: usize) -> Event<'_> {
        let body_len = h.body_len as usize - if h.is_encrypted() { TAG_LEN } else { 0 };
        let body = &self.rx[start + HEADER_LEN..start + HEADER_LEN + body_len];
        let id = h.request_id;
        let last = h.is_last();
        match self.quiet {
            Some(Quiet::RateLimited) => return Event::RateLimited { request_id: id },
            Some(Quiet::Discarded) => {
                return Event::Discarded {
                    request_id: id,
                    len: body.len(),
                    last,
                }
            }
            None => {}
        }
        // Every body below was validated by `dispatch`, so these parses cannot fail; the
        // fallbacks only keep this function total.
        match h.opcode {
            Opcode::HelloReply => Event::ServerKey {
                key: self.server_static,
            },
            Opcode::LoginOk => Event::Ready {
                params: self.params.unwrap_or(ServerParams {
                    max_chunk: MAX_CHUNK_DATA as u32,
                    max_upload: 0,
                    max_in_flight: 1,
                }),
            },
            Opcode::LoginProof => Event::LoggedIn {
                user: self.side.login_user(),
            },
            Opcode::JobSubmit => match JobSubmit::parse(body) {
                Ok(j) => Event::JobSubmit {
                    request_id: id,
                    total_len: j.total_len,
                    spec: j.spec,
                    data: j.data,
                    last,
                },
                Err(_) => Event::Bye,
            },
            Opcode::JobSubmitMulti => match JobSubmit::parse(body) {
                Ok(j) => Event::JobSubmitMulti {
                    request_id: id,
                    total_len: j.total_len,
                    variants: j.spec,
                    data: j.data,
                    last,
                },
                Err(_) => Event::Bye,
            },
            Opcode::VariantResult => match message::parse_variant_result(body) {
                Ok((index, info, data)) => Event::VariantResult {
                    request_id: id,
                    index,
                    info,
                    data,
                    last,
                },
                Err(_) => Event::Bye,
            },
            Opcode::VariantError => match message::parse_variant_error(body) {
                Ok((index, code, message)) => Event::VariantError {
                    request_id: id,
                    index,
                    code,
                    message,
                },
                Err(_) => Event::Bye,
            },
            Opcode::JobData => Event::JobData {
                request_id: id,
                data: body,
                last,
            },
            Opcode::JobResult => match ResultInfo::parse(body) {
                Ok((info, data)) => Event::JobResult {
                    request_id: id,
                    info,
                    data,
                    last,
                },
                Err(_) => Event::Bye,
            },
            Opcode::ResultData => Event::ResultData {
                request_id: id,
                data: body,
                last,
            },
            Opcode::Error => match message::parse_error(body) {
                Ok((code, message)) => Event::Error {
                    request_id: id,
                    code,
                    message,
                },
                Err(_) => Event::Bye,
            },
            Opcode::Busy => Event::Busy {
                request_id: id,
                retry_after_ms: message::parse_u32(body).unwrap_or(0),
            },
            Opcode::Shutdown => Event::Shutdown {
                grace_ms: message::parse_u32(body).unwrap_or(0),
            },
            Opcode::Ping => Event::Ping {
                request_id: id,
                payload: body,
            },
            Opcode::Pong => Event::Pong {
                request_id: id,
                payload: body,
            },
            Opcode::StatsRequest => Event::StatsRequest { request_id: id },
            Opcode::StatsReply => Event::Stats {
                request_id: id,
                body,
            },
            Opcode::Probe => match self.side.probe_answer() {
                Some(status) => Event::Probe { status },
                None => Event::Bye,
            },
            Opcode::Bye
            | Opcode::Hello
            | Opcode::LoginStart
            | Opcode::LoginChallenge
            | Opcode::ProbeReply => Event::Bye,
        }
    }
}
