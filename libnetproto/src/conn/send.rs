//! Frames this side queues for the peer: the sealing of every outgoing frame, and the sends
//! both sides have (ERROR, PING, BYE). Side-only sends live in `client.rs` and `server.rs`.
//!
//! Trust boundary: outgoing frames are sealed with the session key once the handshake has
//! one; nothing is queued after BYE or a fatal error.

use super::{Conn, Phase, Side};
use crate::error::Error;
use crate::frame::{self, Header};
use crate::limits::{HEADER_LEN, MAX_CHUNK_DATA, TAG_LEN};
use crate::message;
use crate::opcode::{flags, ErrorCode, Opcode};

impl<S: Side> Conn<S> {
    pub(super) fn require_ready(&self) -> Result<(), Error> {
        if !self.is_ready() {
            // A connection given up for silence says so to every later send too, so the
            // caller learns why whichever call it makes next.
            if let Some(e @ Error::PeerSilent { .. }) = &self.error {
                return Err(e.clone());
            }
            return Err(Error::BadState("connection is not logged in"));
        }
        Ok(())
    }

    /// Appends one frame: encrypted once keys exist, clear before.
    pub(super) fn queue(
        &mut self,
        op: Opcode,
        flags_byte: u8,
        id: u64,
        parts: &[&[u8]],
    ) -> Result<(), Error> {
        let was_idle = self.tx_start == self.tx.len();
        let plain: usize = parts.iter().map(|p| p.len()).sum();
        // One allocation for the whole frame: an idle connection's send buffer is empty (given
        // back once written), and growing it by doubling would copy it several times.
        self.tx.reserve(HEADER_LEN + plain + TAG_LEN);
        let at = frame::begin(&mut self.tx);
        for p in parts {
            self.tx.extend_from_slice(p);
        }
        let result = match self.send.as_mut() {
            None => frame::finish(&mut self.tx, at, op, flags_byte, id).map(|_| ()),
            Some(cs) => {
                let h = Header {
                    opcode: op,
                    flags: flags_byte | flags::ENCRYPTED,
                    body_len: (plain + TAG_LEN) as u32,
                    request_id: id,
                };
                if plain + TAG_LEN > crate::limits::MAX_BODY_LEN {
                    Err(Error::FrameTooLarge {
                        len: (plain + TAG_LEN) as u64,
                        max: crate::limits::MAX_BODY_LEN as u64,
                    })
                } else {
                    match cs.seal(&h.aad(), &mut self.tx[at + HEADER_LEN..]) {
                        Ok(tag) => {
                            self.tx.extend_from_slice(&tag);
                            frame::write_header_with_crc(&mut self.tx, at, &h);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        if result.is_err() {
            self.tx.truncate(at);
        } else if was_idle {
            // The slow-peer timer measures from when output started waiting.
            self.clock.tx_since = self.clock.latest;
        }
        result
    }

    pub(super) fn last_flag(last: bool) -> u8 {
        if last {
            flags::LAST
        } else {
            0
        }
    }

    pub(super) fn check_data(data: &[u8]) -> Result<(), Error> {
        if data.len() > MAX_CHUNK_DATA {
            return Err(Error::InvalidArgument("chunk data larger than 64 KiB"));
        }
        Ok(())
    }

    /// Either side: an error for request `id` (0: the connection). Allowed in any state but
    /// closed, so a server can refuse a connection before the handshake. On the server this
    /// is the final answer to request `id`.
    pub fn send_error(&mut self, id: u64, code: ErrorCode, text: &str) -> Result<(), Error> {
        // Closed covers a failed connection and one that sent or received BYE: nothing may
        // follow BYE. A server refusing a fresh connection is in its first state, not Closed.
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let mut body = Vec::new();
        message::encode_error(code as u16, text, &mut body);
        self.queue(Opcode::Error, 0, id, &[&body])?;
        S::error_sent(self, id);
        Ok(())
    }

    /// Either side: PING with a payload of at most 256 bytes; the peer echoes it in PONG.
    pub fn send_ping(&mut self, id: u64, payload: &[u8]) -> Result<(), Error> {
        self.require_ready()?;
        message::check_ping(payload)
            .map_err(|_| Error::InvalidArgument("ping payload longer than 256 bytes"))?;
        self.queue(Opcode::Ping, 0, id, &[payload])
    }

    /// Orderly close: queues BYE; the connection accepts no more sends.
    pub fn send_bye(&mut self) -> Result<(), Error> {
        if self.bye_sent || !self.is_ready() {
            return Err(Error::BadState("BYE needs a logged-in session, once"));
        }
        self.bye_sent = true;
        self.queue(Opcode::Bye, 0, 0, &[])?;
        self.phase = Phase::Closed;
        Ok(())
    }
}
