//! The v1 frame: a fixed 24-byte header and a body, decoded from and encoded into byte slices.
//!
//! Trust boundary: the first code to see bytes from the network. It rejects a frame as early as
//! the bytes allow (magic after 2 bytes, length after 8) and checks the declared length against
//! the limit before anyone allocates for the body. No I/O, no clock.
//!
//! ```text
//! 0      2    3     4          8        10         12             20        24
//! +------+----+-----+----------+--------+----------+--------------+---------+------
//! | "NP" | v1 |flags| body_len | opcode | reserved |  request id  | CRC-32C | body…
//! +------+----+-----+----------+--------+----------+--------------+---------+------
//! big-endian; CRC-32C covers bytes 0..20 and the body (ciphertext when encrypted)
//! ```

use crate::crc::crc32c_parts;
use crate::error::Error;
use crate::limits::{HEADER_AAD_LEN, HEADER_LEN, MAX_BODY_LEN};
use crate::opcode::{flags, Opcode};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"NP";
/// Protocol version carried in every header.
pub const VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// A decoded frame header.
pub struct Header {
    /// What the frame carries.
    pub opcode: Opcode,
    /// Flag bits (`opcode::flags`).
    pub flags: u8,
    /// Length of the body that follows.
    pub body_len: u32,
    /// Request the frame belongs to (0: the connection).
    pub request_id: u64,
}

impl Header {
    /// Whether the body is ciphertext plus tag.
    pub fn is_encrypted(&self) -> bool {
        self.flags & flags::ENCRYPTED != 0
    }

    /// Whether this is the last frame of a chunked stream.
    pub fn is_last(&self) -> bool {
        self.flags & flags::LAST != 0
    }

    /// The first 20 header bytes: what the CRC starts with and what the AEAD authenticates.
    pub fn aad(&self) -> [u8; HEADER_AAD_LEN] {
        let mut h = [0u8; HEADER_AAD_LEN];
        h[0..2].copy_from_slice(&MAGIC);
        h[2] = VERSION;
        h[3] = self.flags;
        h[4..8].copy_from_slice(&self.body_len.to_be_bytes());
        h[8..10].copy_from_slice(&(self.opcode as u16).to_be_bytes());
        // 10..12 reserved, zero
        h[12..20].copy_from_slice(&self.request_id.to_be_bytes());
        h
    }
}

/// A complete frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame's header.
    pub header: Header,
    /// The body, borrowed from the input buffer.
    pub body: &'a [u8],
    /// Bytes of the input this frame occupies (header + body).
    pub used: usize,
}

/// Outcome of a successful decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// No complete frame yet; at least this many more bytes are needed.
    NeedMore(usize),
    /// One whole frame.
    Frame(Frame<'a>),
}

/// Decodes the frame at the start of `buf`. Bytes after the frame are left for the next call.
/// `max_body` lowers the limit below `MAX_BODY_LEN` (e.g. during the handshake).
pub fn decode(buf: &[u8], max_body: usize) -> Result<Decoded<'_>, Error> {
    let max_body = max_body.min(MAX_BODY_LEN);
    // Validate whatever prefix of the header has arrived, so garbage is cut off at once.
    if buf.len() >= 2 && buf[0..2] != MAGIC {
        return Err(Error::BadMagic);
    }
    if buf.len() >= 3 && buf[2] != VERSION {
        return Err(Error::BadVersion(buf[2]));
    }
    if buf.len() >= 4 && buf[3] & !flags::KNOWN != 0 {
        return Err(Error::BadFlags(buf[3]));
    }
    if buf.len() >= 8 {
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as u64;
        if len > max_body as u64 {
            return Err(Error::FrameTooLarge {
                len,
                max: max_body as u64,
            });
        }
    }
    if buf.len() >= 10 {
        let raw = u16::from_be_bytes([buf[8], buf[9]]);
        if Opcode::from_u16(raw).is_none() {
            return Err(Error::UnknownOpcode(raw));
        }
    }
    if buf.len() >= 12 && buf[10..12] != [0, 0] {
        return Err(Error::BadReserved);
    }
    if buf.len() < HEADER_LEN {
        return Ok(Decoded::NeedMore(HEADER_LEN - buf.len()));
    }
    let body_len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let opcode =
        Opcode::from_u16(u16::from_be_bytes([buf[8], buf[9]])).ok_or(Error::UnknownOpcode(0))?;
    let flags_byte = buf[3];
    if flags_byte & flags::LAST != 0 && !opcode.is_chunked() {
        return Err(Error::BadFlags(flags_byte));
    }
    let total = HEADER_LEN + body_len as usize;
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total - buf.len()));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&buf[12..20]);
    let expected = u32::from_be_bytes([buf[20], buf[21], buf[22], buf[23]]);
    let body = &buf[HEADER_LEN..total];
    let actual = crc32c_parts(&[&buf[..HEADER_AAD_LEN], body]);
    if expected != actual {
        return Err(Error::BadCrc { expected, actual });
    }
    Ok(Decoded::Frame(Frame {
        header: Header {
            opcode,
            flags: flags_byte,
            body_len,
            request_id: u64::from_be_bytes(id),
        },
        body,
        used: total,
    }))
}

/// Starts a frame in `out`: reserves the header and returns the frame's offset. Append the
/// body to `out`, then call [`finish`].
pub fn begin(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.resize(at + HEADER_LEN, 0);
    at
}

/// Fills in the header of the frame begun at `at`, whose body is everything after its header.
/// Returns the header (with the final body length) so callers can use it as AEAD data.
pub fn finish(
    out: &mut [u8],
    at: usize,
    opcode: Opcode,
    flags_byte: u8,
    request_id: u64,
) -> Result<Header, Error> {
    let body_len = out.len() - at - HEADER_LEN;
    if body_len > MAX_BODY_LEN {
        return Err(Error::FrameTooLarge {
            len: body_len as u64,
            max: MAX_BODY_LEN as u64,
        });
    }
    if flags_byte & !flags::KNOWN != 0 || (flags_byte & flags::LAST != 0 && !opcode.is_chunked()) {
        return Err(Error::BadFlags(flags_byte));
    }
    let header = Header {
        opcode,
        flags: flags_byte,
        body_len: body_len as u32,
        request_id,
    };
    write_header_with_crc(out, at, &header);
    Ok(header)
}

/// Writes the header fields and the CRC over them and the body already in place.
pub fn write_header_with_crc(out: &mut [u8], at: usize, header: &Header) {
    let aad = header.aad();
    out[at..at + HEADER_AAD_LEN].copy_from_slice(&aad);
    let body = &out[at + HEADER_LEN..at + HEADER_LEN + header.body_len as usize];
    let crc = crc32c_parts(&[&aad, body]);
    out[at + HEADER_AAD_LEN..at + HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
}

/// Appends a complete frame with a clear body.
pub fn encode(
    out: &mut Vec<u8>,
    opcode: Opcode,
    flags_byte: u8,
    request_id: u64,
    body: &[u8],
) -> Result<Header, Error> {
    let at = begin(out);
    out.extend_from_slice(body);
    let r = finish(out, at, opcode, flags_byte, request_id);
    if r.is_err() {
        out.truncate(at);
    }
    r
}
