//! The events a connection reports, and how one is built from the frame behind it.
//!
//! Trust boundary: an event is only ever built from a frame that `dispatch` already decrypted
//! and validated; its borrowed data points into the receive buffer.

use super::{Conn, Side};
use crate::frame::Header;
use crate::limits::{HEADER_LEN, MAX_CHUNK_DATA, TAG_LEN};
use crate::message::{self, JobSubmit, ResultInfo, ServerParams};
use crate::opcode::Opcode;

/// What the peer did, as seen after validation. Borrowed data lives until the next call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Client: the server proved this static key; answer with [`ClientConn::trust_server_key`](super::ClientConn::trust_server_key).
    ServerKey {
        key: [u8; 32],
    },
    /// Client: login succeeded and the server proved it holds our verifier.
    Ready {
        params: ServerParams,
    },
    /// Server: the client logged in.
    LoggedIn {
        user: &'a str,
    },
    JobSubmit {
        request_id: u64,
        total_len: u64,
        spec: &'a str,
        data: &'a [u8],
        last: bool,
    },
    JobData {
        request_id: u64,
        data: &'a [u8],
        last: bool,
    },
    JobResult {
        request_id: u64,
        info: ResultInfo,
        data: &'a [u8],
        last: bool,
    },
    ResultData {
        request_id: u64,
        data: &'a [u8],
        last: bool,
    },
    Error {
        request_id: u64,
        code: u16,
        message: &'a str,
    },
    Busy {
        request_id: u64,
        retry_after_ms: u32,
    },
    /// A PING arrived; the PONG is already queued.
    Ping {
        request_id: u64,
        payload: &'a [u8],
    },
    Pong {
        request_id: u64,
        payload: &'a [u8],
    },
    StatsRequest {
        request_id: u64,
    },
    /// Raw STATS_REPLY body, already validated; read it with [`message::parse_stats`].
    Stats {
        request_id: u64,
        body: &'a [u8],
    },
    Shutdown {
        grace_ms: u32,
    },
    Bye,
}

impl<S: Side> Conn<S> {
    pub(super) fn build_event(&self, h: Header, start: usize) -> Event<'_> {
        let body_len = h.body_len as usize - if h.is_encrypted() { TAG_LEN } else { 0 };
        let body = &self.rx[start + HEADER_LEN..start + HEADER_LEN + body_len];
        let id = h.request_id;
        let last = h.is_last();
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
            Opcode::Bye | Opcode::Hello | Opcode::LoginStart | Opcode::LoginChallenge => Event::Bye,
        }
    }
}
