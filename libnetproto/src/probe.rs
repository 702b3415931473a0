//! PROBE: the unauthenticated readiness check. A client sends one fixed frame as its first
//! (instead of HELLO); the server answers one fixed frame per status and closes. The bytes
//! never vary, so a load balancer can send and match them verbatim (HAProxy `tcp-check
//! send-binary` / `expect binary`).
//!
//! Trust boundary: what an anonymous peer learns. The answer is one of three status bytes —
//! no version, no counts, no key, no user — and costs the server no key exchange. The client
//! half here parses the server's answer and rejects anything but PROBE_REPLY or ERROR. Pure:
//! no I/O; the server half lives in the server's state machine (`conn::server`).

use crate::error::Error;
use crate::frame::{self, Decoded};
use crate::limits::{
    MAX_HANDSHAKE_BODY, PROBE_DRAINING, PROBE_LEN, PROBE_NOT_READY, PROBE_READY, PROBE_REPLY_LEN,
};
use crate::message;
use crate::opcode::{ErrorCode, Opcode};

/// What a PROBE_REPLY says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeStatus {
    /// Up, with at least one worker ready: send it work.
    Ready,
    /// Up, but it cannot serve work now (no worker ready).
    NotReady,
    /// Up and stopping: finishing what is in flight, taking nothing new.
    Draining,
}

impl ProbeStatus {
    /// The status byte on the wire (`NP_PROBE_*`).
    pub fn to_byte(self) -> u8 {
        (match self {
            ProbeStatus::Ready => PROBE_READY,
            ProbeStatus::NotReady => PROBE_NOT_READY,
            ProbeStatus::Draining => PROBE_DRAINING,
        }) as u8
    }

    /// The status of wire byte (or `NP_PROBE_*` number) `v`, if it is one.
    pub fn from_u32(v: u32) -> Option<ProbeStatus> {
        match v {
            PROBE_READY => Some(ProbeStatus::Ready),
            PROBE_NOT_READY => Some(ProbeStatus::NotReady),
            PROBE_DRAINING => Some(ProbeStatus::Draining),
            _ => None,
        }
    }

    /// A short word for people: "ready", "not ready", "draining".
    pub fn word(self) -> &'static str {
        match self {
            ProbeStatus::Ready => "ready",
            ProbeStatus::NotReady => "not ready",
            ProbeStatus::Draining => "draining",
        }
    }
}

/// The PROBE frame: clear, flags 0, request id 0, empty body. Always the same bytes.
pub fn request() -> [u8; PROBE_LEN] {
    let mut out = Vec::with_capacity(PROBE_LEN);
    frame::encode(&mut out, Opcode::Probe, 0, 0, &[]).expect("an empty clear frame encodes");
    out.try_into()
        .expect("a header-only frame is PROBE_LEN bytes")
}

/// The PROBE_REPLY frame for `status`: clear, flags 0, request id 0, one status byte.
pub fn reply(status: ProbeStatus) -> [u8; PROBE_REPLY_LEN] {
    let mut out = Vec::with_capacity(PROBE_REPLY_LEN);
    frame::encode(&mut out, Opcode::ProbeReply, 0, 0, &[status.to_byte()])
        .expect("a one-byte clear frame encodes");
    out.try_into()
        .expect("PROBE_REPLY is PROBE_REPLY_LEN bytes")
}

/// The server's answer to a PROBE, as far as the bytes so far tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// Not a whole frame yet: at least this many more bytes are needed.
    NeedMore(usize),
    /// A PROBE_REPLY.
    Status(ProbeStatus),
    /// The server refused the connection before looking at the probe (a clear ERROR:
    /// TOO_MANY_CONNECTIONS, RATE_LIMITED, …).
    Refused {
        /// The wire error code.
        code: u16,
        /// The server's text.
        message: String,
    },
}

/// Parses the first frame the server sent after a PROBE. Framing errors, an encrypted
/// frame, another opcode, a request id other than 0 or a body other than one known status
/// byte are errors (the peer is not a v1 server answering a probe).
pub fn parse_reply(buf: &[u8]) -> Result<ProbeAnswer, Error> {
    let f = match frame::decode(buf, MAX_HANDSHAKE_BODY)? {
        Decoded::NeedMore(n) => return Ok(ProbeAnswer::NeedMore(n)),
        Decoded::Frame(f) => f,
    };
    let h = f.header;
    if h.flags != 0 {
        return Err(Error::BadFlags(h.flags));
    }
    match h.opcode {
        Opcode::ProbeReply => {
            if h.request_id != 0 {
                return Err(Error::Malformed("PROBE_REPLY request id must be 0"));
            }
            match f.body {
                [b] => ProbeStatus::from_u32(u32::from(*b))
                    .map(ProbeAnswer::Status)
                    .ok_or(Error::Malformed("unknown PROBE_REPLY status")),
                _ => Err(Error::Malformed("PROBE_REPLY body must be one byte")),
            }
        }
        Opcode::Error => {
            let (code, text) = message::parse_error(f.body)?;
            Ok(ProbeAnswer::Refused {
                code,
                message: text.to_string(),
            })
        }
        op => Err(Error::UnexpectedMessage {
            opcode: op.name(),
            state: "probe (awaiting PROBE_REPLY)",
        }),
    }
}

/// The error for a Refused answer, as the rest of the library reports a peer's ERROR.
pub fn refused_error(code: u16, message: String) -> Error {
    let name = ErrorCode::from_u16(code).map_or("UNKNOWN", |c| c.name());
    Error::Remote {
        code,
        name,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn every_reply_parses_back_split_anywhere() {
        for s in [
            ProbeStatus::Ready,
            ProbeStatus::NotReady,
            ProbeStatus::Draining,
        ] {
            let r = reply(s);
            for cut in 0..r.len() {
                assert!(matches!(
                    parse_reply(&r[..cut]),
                    Ok(ProbeAnswer::NeedMore(_))
                ));
            }
            assert_eq!(parse_reply(&r), Ok(ProbeAnswer::Status(s)));
            assert_eq!(ProbeStatus::from_u32(s.to_byte().into()), Some(s));
        }
        assert_eq!(ProbeStatus::from_u32(0), None);
        assert_eq!(ProbeStatus::from_u32(4), None);
    }

    #[test]
    fn anything_but_a_reply_or_an_error_is_refused() {
        // A probe echoed back is not an answer.
        assert!(matches!(
            parse_reply(&request()),
            Err(Error::UnexpectedMessage { .. })
        ));
        // An unknown status byte, with its CRC right.
        let mut bad = Vec::new();
        frame::encode(&mut bad, Opcode::ProbeReply, 0, 0, &[9]).unwrap();
        assert!(matches!(parse_reply(&bad), Err(Error::Malformed(_))));
        let mut two = Vec::new();
        frame::encode(&mut two, Opcode::ProbeReply, 0, 0, &[1, 1]).unwrap();
        assert!(matches!(parse_reply(&two), Err(Error::Malformed(_))));
        let mut id = Vec::new();
        frame::encode(&mut id, Opcode::ProbeReply, 0, 7, &[1]).unwrap();
        assert!(matches!(parse_reply(&id), Err(Error::Malformed(_))));
        // A flipped bit is a CRC error, not a different status.
        let mut flipped = reply(ProbeStatus::Ready);
        flipped[PROBE_REPLY_LEN - 1] ^= 3;
        assert!(matches!(parse_reply(&flipped), Err(Error::BadCrc { .. })));
        assert!(matches!(parse_reply(b"HTTP/1.1 400"), Err(Error::BadMagic)));
    }

    #[test]
    fn a_refusal_is_reported_with_its_code() {
        let mut body = Vec::new();
        message::encode_error(
            ErrorCode::RateLimited as u16,
            "retry-after-ms=5; slow",
            &mut body,
        );
        let mut f = Vec::new();
        frame::encode(&mut f, Opcode::Error, 0, 0, &body).unwrap();
        assert_eq!(
            parse_reply(&f),
            Ok(ProbeAnswer::Refused {
                code: 407,
                message: "retry-after-ms=5; slow".into()
            })
        );
    }

    #[test]
    fn the_bytes_are_fixed() {
        // The same strings as docs/PROTOCOL.md section 4.15 and Appendix A.
        assert_eq!(hex(&request()), PROBE_HEX);
        assert_eq!(hex(&reply(ProbeStatus::Ready)), REPLY_READY_HEX);
        assert_eq!(hex(&reply(ProbeStatus::NotReady)), REPLY_NOT_READY_HEX);
        assert_eq!(hex(&reply(ProbeStatus::Draining)), REPLY_DRAINING_HEX);
    }

    const PROBE_HEX: &str = "4e50010000000000004000000000000000000000530e5c8f";
    const REPLY_READY_HEX: &str = "4e5001000000000100410000000000000000000019d6582401";
    const REPLY_NOT_READY_HEX: &str = "4e500100000000010041000000000000000000000a86abd002";
    const REPLY_DRAINING_HEX: &str = "4e50010000000001004100000000000000000000f8ed28d303";
}
