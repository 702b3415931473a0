//! Bookkeeping of inbound chunked streams: an upload on the server, a result on the client.
//!
//! Trust boundary: the peer declares a total length and sends chunks; every chunk is checked
//! against what was declared, and LAST must sit exactly on the chunk that completes it, so a
//! peer cannot make a stream end early, run over, or never end.

use std::ops::Range;

use super::sealed::Step;
use super::{Conn, Side};
use crate::error::Error;
use crate::frame::Header;
use crate::message;

/// Progress of one inbound chunked stream (an upload on the server, a result on the client).
pub(super) struct Stream {
    pub(super) remaining: u64,
    /// The caller refused this request: its remaining chunks are validated and dropped.
    pub(super) discard: bool,
}

impl<S: Side> Conn<S> {
    /// The first chunk of an inbound stream (JOB_SUBMIT on the server, JOB_RESULT on the
    /// client), declaring `total` bytes.
    pub(super) fn start_stream(
        &mut self,
        id: u64,
        total: u64,
        data_len: usize,
        last: bool,
    ) -> Result<(), Error> {
        if self.streams.contains_key(&id) {
            return Err(Error::Malformed(
                "request id already has a stream in progress",
            ));
        }
        self.streams.insert(
            id,
            Stream {
                remaining: total,
                discard: false,
            },
        );
        self.advance_stream(id, data_len, last)
    }

    /// A further chunk (JOB_DATA, RESULT_DATA); a quiet `Discarded` event when the caller
    /// refused the stream.
    pub(super) fn stream_chunk(&mut self, h: Header, body: Range<usize>) -> Result<Step, Error> {
        message::check_chunk(&self.rx[body.clone()])?;
        let discard = self
            .streams
            .get(&h.request_id)
            .ok_or(Error::Malformed(
                "data for a request with no stream in progress",
            ))?
            .discard;
        self.advance_stream(h.request_id, body.len(), h.is_last())?;
        if discard {
            self.quiet = Some(super::Quiet::Discarded);
        }
        Ok(Step::Event)
    }

    pub(super) fn advance_stream(&mut self, id: u64, n: usize, last: bool) -> Result<(), Error> {
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(Error::Malformed("no stream"))?;
        s.remaining = s
            .remaining
            .checked_sub(n as u64)
            .ok_or(Error::Malformed("chunks exceed the declared total length"))?;
        match (last, s.remaining == 0) {
            (true, true) => {
                self.end_stream(id);
                Ok(())
            }
            (false, false) => Ok(()),
            // LAST must sit exactly on the frame that completes the declared length.
            (false, true) => Err(Error::Malformed(
                "declared total length reached without the LAST flag",
            )),
            (true, false) => Err(Error::Malformed(
                "last chunk before the declared total length",
            )),
        }
    }

    /// Drops the rest of request `id`'s inbound stream as it arrives. Only the
    /// `MAX_REFUSED_STREAMS` latest refused streams are kept: a peer that opens uploads only
    /// to have them refused, and never ends them, cannot grow the table without end.
    pub(super) fn discard_stream(&mut self, id: u64) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.discard {
            return;
        }
        s.discard = true;
        self.refused.push_back(id);
        while self.refused.len() > crate::limits::MAX_REFUSED_STREAMS {
            if let Some(old) = self.refused.pop_front() {
                self.streams.remove(&old);
            }
        }
    }

    /// Forgets stream `id`, which has ended.
    fn end_stream(&mut self, id: u64) {
        if self.streams.remove(&id).is_some_and(|s| s.discard) {
            self.refused.retain(|&r| r != id);
        }
    }
}
