//! Message bodies of protocol v1: typed structs, their byte layouts, and strict parsers.
//!
//! Trust boundary: bodies arrive from the peer (after decryption, when encrypted); every parser
//! checks each length against its limit and rejects trailing bytes.

use crate::error::Error;
use crate::limits::{
    MAX_CHUNK_DATA, MAX_ERROR_TEXT, MAX_PING_PAYLOAD, MAX_SPEC_LEN, MAX_USER_LEN, MAX_VARIANTS,
};
use crate::reader::Reader;

/// HELLO body: `version u8 | reserved u8 = 0 | client ephemeral public key [32]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the client speaks (1).
    pub version: u8,
    /// The client's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
}

impl Hello {
    /// Length of a HELLO body.
    pub const LEN: usize = 34;

    /// Appends the body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(0);
        out.extend_from_slice(&self.ephemeral);
    }

    /// Parses a HELLO body; rejects trailing bytes.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let version = r.u8()?;
        if r.u8()? != 0 {
            return Err(Error::Malformed("HELLO reserved byte"));
        }
        let ephemeral = r.array()?;
        r.finish()?;
        Ok(Hello { version, ephemeral })
    }
}

/// Session parameters the server announces inside HELLO_REPLY (encrypted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerParams {
    /// Largest image-data bytes per JOB/RESULT frame.
    pub max_chunk: u32,
    /// Largest declared upload (total job input length).
    pub max_upload: u64,
    /// Most jobs one connection may have in flight.
    pub max_in_flight: u32,
}

impl ServerParams {
    /// Length of the encoded parameters.
    pub const LEN: usize = 16;

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.max_chunk.to_be_bytes());
        out.extend_from_slice(&self.max_upload.to_be_bytes());
        out.extend_from_slice(&self.max_in_flight.to_be_bytes());
    }

    /// Parses the parameters and checks their ranges.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let p = ServerParams {
            max_chunk: r.u32()?,
            max_upload: r.u64()?,
            max_in_flight: r.u32()?,
        };
        r.finish()?;
        if p.max_chunk == 0 || p.max_chunk as usize > MAX_CHUNK_DATA || p.max_in_flight == 0 {
            return Err(Error::Malformed("server parameters out of range"));
        }
        Ok(p)
    }
}

/// LOGIN_START body: `user_len u8 | user (UTF-8, 1..=64 bytes)`.
pub fn encode_login_start(user: &str, out: &mut Vec<u8>) -> Result<(), Error> {
    check_user(user)?;
    out.push(user.len() as u8);
    out.extend_from_slice(user.as_bytes());
    Ok(())
}

/// Parses a LOGIN_START body into the user name.
pub fn parse_login_start(body: &[u8]) -> Result<&str, Error> {
    let mut r = Reader::new(body);
    let n = r.u8()? as usize;
    let user = std::str::from_utf8(r.take(n)?).map_err(|_| Error::Malformed("user not UTF-8"))?;
    r.finish()?;
    check_user(user)?;
    Ok(user)
}

/// User names: 1..=64 bytes of printable non-space ASCII or UTF-8 without control characters,
/// no ':' (the verifier file's separator).
pub fn check_user(user: &str) -> Result<(), Error> {
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return Err(Error::InvalidArgument("user name must be 1..=64 bytes"));
    }
    if user
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == ':')
    {
        return Err(Error::InvalidArgument(
            "user name has whitespace, ':' or a control character",
        ));
    }
    Ok(())
}

/// LOGIN_CHALLENGE body: `salt_len u8 (16..=64) | salt | iterations u32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// PBKDF2 salt (16..=64 bytes).
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count.
    pub iterations: u32,
}

impl Challenge {
    /// Appends the body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.salt.len() as u8);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.iterations.to_be_bytes());
    }

    /// Parses a LOGIN_CHALLENGE body; checks the salt length.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let n = r.u8()? as usize;
        if !(16..=64).contains(&n) {
            return Err(Error::Malformed("salt length out of range"));
        }
        let salt = r.take(n)?.to_vec();
        let iterations = r.u32()?;
        r.finish()?;
        Ok(Challenge { salt, iterations })
    }
}

/// LOGIN_PROOF and LOGIN_OK bodies: exactly 32 bytes.
pub fn parse_32(body: &[u8]) -> Result<[u8; 32], Error> {
    let mut r = Reader::new(body);
    let a = r.array()?;
    r.finish()?;
    Ok(a)
}

/// JOB_SUBMIT body: `total_len u64 | spec_len u16 | spec (UTF-8) | first data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSubmit<'a> {
    /// Declared length of the whole job input.
    pub total_len: u64,
    /// The op spec (docs/PROTOCOL.md, section 12).
    pub spec: &'a str,
    /// The first chunk of input.
    pub data: &'a [u8],
}

impl<'a> JobSubmit<'a> {
    /// Appends the part of the body before the data to `out`.
    pub fn encode_head(total_len: u64, spec: &str, out: &mut Vec<u8>) -> Result<(), Error> {
        if spec.len() > MAX_SPEC_LEN {
            return Err(Error::InvalidArgument("op spec longer than 1024 bytes"));
        }
        out.extend_from_slice(&total_len.to_be_bytes());
        out.extend_from_slice(&(spec.len() as u16).to_be_bytes());
        out.extend_from_slice(spec.as_bytes());
        Ok(())
    }

    /// Parses a JOB_SUBMIT body; checks the spec length and the chunk size.
    pub fn parse(body: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let total_len = r.u64()?;
        let n = r.u16()? as usize;
        if n > MAX_SPEC_LEN {
            return Err(Error::Malformed("op spec longer than 1024 bytes"));
        }
        let spec =
            std::str::from_utf8(r.take(n)?).map_err(|_| Error::Malformed("spec not UTF-8"))?;
        let data = r.rest();
        check_chunk(data)?;
        Ok(JobSubmit {
            total_len,
            spec,
            data,
        })
    }
}

/// What the server says about a finished job, at the head of JOB_RESULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResultInfo {
    /// Length of the whole encoded result.
    pub total_len: u64,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Output format: 1 png, 2 jpeg, 3 gif, 4 webp, 5 bmp, 6 tiff, 7 avif (0 unknown).
    pub format: u8,
    /// Server-side phase times in microseconds: queue, decode, filter, encode.
    pub queue_us: u32,
    /// Decode time in microseconds.
    pub decode_us: u32,
    /// Filter time in microseconds.
    pub filter_us: u32,
    /// Encode time in microseconds.
    pub encode_us: u32,
}

impl ResultInfo {
    /// `total_len u64 | width u32 | height u32 | format u8 | reserved [3] | queue_us u32 |
    /// decode_us u32 | filter_us u32 | encode_us u32`
    pub const LEN: usize = 36;

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.total_len.to_be_bytes());
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&[self.format, 0, 0, 0]);
        for v in [
            self.queue_us,
            self.decode_us,
            self.filter_us,
            self.encode_us,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Parses the head of a JOB_RESULT body; returns the info and the first data.
    pub fn parse(body: &[u8]) -> Result<(Self, &[u8]), Error> {
        let mut r = Reader::new(body);
        let total_len = r.u64()?;
        let width = r.u32()?;
        let height = r.u32()?;
        let format = r.u8()?;
        if r.take(3)? != [0, 0, 0] {
            return Err(Error::Malformed("JOB_RESULT reserved bytes"));
        }
        let info = ResultInfo {
            total_len,
            width,
            height,
            format,
            queue_us: r.u32()?,
            decode_us: r.u32()?,
            filter_us: r.u32()?,
            encode_us: r.u32()?,
        };
        let data = r.rest();
        check_chunk(data)?;
        Ok((info, data))
    }
}

/// The separator of the op specs in a JOB_SUBMIT_MULTI's variant list.
pub const VARIANT_SEPARATOR: char = ';';

/// How many variants a JOB_SUBMIT_MULTI's variant list names, if the count is in
/// 2..=MAX_VARIANTS (what the connection tracks). The specs themselves are the application's to
/// check: an empty or bad one is its per-request BAD_SPEC, not a protocol violation.
pub fn variant_count(list: &str) -> Option<u8> {
    let n = list.split(VARIANT_SEPARATOR).count();
    (2..=MAX_VARIANTS).contains(&n).then_some(n as u8)
}

/// Checks a variant list a client is about to send: 2..=MAX_VARIANTS specs, none empty (or
/// only spaces), the whole text within MAX_SPEC_LEN. Returns the count.
pub fn check_variant_list(list: &str) -> Result<u8, Error> {
    if list.len() > MAX_SPEC_LEN {
        return Err(Error::InvalidArgument(
            "variant list longer than 1024 bytes",
        ));
    }
    let n = variant_count(list).ok_or(Error::InvalidArgument(
        "a variant list has 2..=MAX_VARIANTS op specs separated by ';'",
    ))?;
    if list.split(VARIANT_SEPARATOR).any(|v| v.trim().is_empty()) {
        return Err(Error::InvalidArgument(
            "a variant list has an empty op spec",
        ));
    }
    Ok(n)
}

/// VARIANT_RESULT body: `index u8 | reserved [3] = 0 | ResultInfo (36) | first data`.
pub fn encode_variant_result_head(index: u8, info: &ResultInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(&[index, 0, 0, 0]);
    info.encode(out);
}

/// Parses a VARIANT_RESULT body into the variant's index, its result info and the first data.
pub fn parse_variant_result(body: &[u8]) -> Result<(u8, ResultInfo, &[u8]), Error> {
    let mut r = Reader::new(body);
    let index = r.u8()?;
    if r.take(3)? != [0, 0, 0] {
        return Err(Error::Malformed("VARIANT_RESULT reserved bytes"));
    }
    let (info, data) = ResultInfo::parse(r.rest())?;
    Ok((index, info, data))
}

/// VARIANT_ERROR body: `index u8 | reserved u8 = 0 | code u16 | text_len u16 | text`.
pub fn encode_variant_error(index: u8, code: u16, text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&[index, 0]);
    encode_error(code, text, out);
}

/// Parses a VARIANT_ERROR body into the variant's index, the code and the text.
pub fn parse_variant_error(body: &[u8]) -> Result<(u8, u16, &str), Error> {
    let mut r = Reader::new(body);
    let index = r.u8()?;
    if r.u8()? != 0 {
        return Err(Error::Malformed("VARIANT_ERROR reserved byte"));
    }
    let (code, text) = parse_error(r.rest())?;
    Ok((index, code, text))
}

/// JOB_DATA / RESULT_DATA bodies are raw data, at most `MAX_CHUNK_DATA` bytes.
pub fn check_chunk(data: &[u8]) -> Result<(), Error> {
    if data.len() > MAX_CHUNK_DATA {
        return Err(Error::Malformed("chunk larger than 64 KiB"));
    }
    Ok(())
}

/// ERROR body: `code u16 | text_len u16 | text (UTF-8, ≤ 1024 bytes)`.
pub fn encode_error(code: u16, text: &str, out: &mut Vec<u8>) {
    let text = truncate_utf8(text, MAX_ERROR_TEXT);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Parses an ERROR body into its code and text.
pub fn parse_error(body: &[u8]) -> Result<(u16, &str), Error> {
    let mut r = Reader::new(body);
    let code = r.u16()?;
    let n = r.u16()? as usize;
    if n > MAX_ERROR_TEXT {
        return Err(Error::Malformed("error text longer than 1024 bytes"));
    }
    let text =
        std::str::from_utf8(r.take(n)?).map_err(|_| Error::Malformed("error text not UTF-8"))?;
    r.finish()?;
    Ok((code, text))
}

/// The stable prefix of a RATE_LIMITED text: `retry-after-ms=N;` then the human part.
const RETRY_AFTER_PREFIX: &str = "retry-after-ms=";

/// The text of a RATE_LIMITED ERROR: `retry-after-ms=N; why`. The only ERROR text with a
/// machine-read part (PROTOCOL §11); everything after the `;` is for people.
pub fn rate_limited_text(retry_after_ms: u32, why: &str) -> String {
    format!("{RETRY_AFTER_PREFIX}{retry_after_ms}; {why}")
}

/// The retry-after delay a RATE_LIMITED text carries, `None` when the text does not start
/// with `retry-after-ms=N;` (any other code's text, or an older peer's).
pub fn retry_after_in_text(text: &str) -> Option<u32> {
    let rest = text.strip_prefix(RETRY_AFTER_PREFIX)?;
    let (n, _) = rest.split_once(';')?;
    if n.is_empty() || n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// BUSY body: `retry_after_ms u32`; SHUTDOWN body: `grace_ms u32`.
pub fn parse_u32(body: &[u8]) -> Result<u32, Error> {
    let mut r = Reader::new(body);
    let v = r.u32()?;
    r.finish()?;
    Ok(v)
}

/// PING / PONG bodies: opaque payload of at most 256 bytes, echoed.
pub fn check_ping(payload: &[u8]) -> Result<(), Error> {
    if payload.len() > MAX_PING_PAYLOAD {
        return Err(Error::Malformed("ping payload longer than 256 bytes"));
    }
    Ok(())
}

/// Empty bodies (STATS_REQUEST, BYE).
pub fn parse_empty(body: &[u8]) -> Result<(), Error> {
    Reader::new(body).finish()
}

/// STATS_REPLY body: `count u16 | count × (name_len u8 | name (ASCII) | value u64)`.
pub fn encode_stats<'a>(
    entries: impl IntoIterator<Item = (&'a str, u64)>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    let mut n: u16 = 0;
    for (name, value) in entries {
        if name.is_empty() || name.len() > 255 || !name.is_ascii() {
            out.truncate(at);
            return Err(Error::InvalidArgument(
                "stat name must be 1..=255 ASCII bytes",
            ));
        }
        n = n
            .checked_add(1)
            .ok_or(Error::InvalidArgument("too many stats"))?;
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    out[at..at + 2].copy_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Decodes a STATS_REPLY body into name/value pairs.
pub fn parse_stats(body: &[u8]) -> Result<Vec<(String, u64)>, Error> {
    let mut r = Reader::new(body);
    let n = r.u16()?;
    let mut out = Vec::with_capacity((n as usize).min(body.len() / 10));
    for _ in 0..n {
        let len = r.u8()? as usize;
        let name = std::str::from_utf8(r.take(len)?)
            .ok()
            .filter(|s| !s.is_empty() && s.is_ascii())
            .ok_or(Error::Malformed("stat name not ASCII"))?;
        out.push((name.to_string(), r.u64()?));
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_bodies_round_trip_and_reject_reserved_bytes() {
        let info = ResultInfo {
            total_len: 5,
            width: 3,
            height: 2,
            format: 4,
            queue_us: 1,
            decode_us: 2,
            filter_us: 3,
            encode_us: 4,
        };
        let mut b = Vec::new();
        encode_variant_result_head(7, &info, &mut b);
        assert_eq!(b.len(), 4 + ResultInfo::LEN);
        b.extend_from_slice(b"hello");
        assert_eq!(parse_variant_result(&b).unwrap(), (7, info, &b"hello"[..]));
        b[2] = 1;
        assert!(parse_variant_result(&b).is_err());

        let mut e = Vec::new();
        encode_variant_error(1, 306, "cannot encode", &mut e);
        assert_eq!(&e[..4], &[1, 0, 0x01, 0x32]);
        assert_eq!(parse_variant_error(&e).unwrap(), (1, 306, "cannot encode"));
        e[1] = 9;
        assert!(parse_variant_error(&e).is_err());
        assert!(parse_variant_error(&[0]).is_err());
    }

    #[test]
    fn variant_lists_are_counted_and_checked() {
        assert_eq!(variant_count("a"), None);
        assert_eq!(variant_count("a;b"), Some(2));
        assert_eq!(
            variant_count(&["x"; MAX_VARIANTS].join(";")),
            Some(MAX_VARIANTS as u8)
        );
        assert_eq!(variant_count(&["x"; MAX_VARIANTS + 1].join(";")), None);
        assert_eq!(check_variant_list("resize 10x10; format webp").unwrap(), 2);
        assert!(check_variant_list("resize 10x10;").is_err());
        assert!(check_variant_list("a; ;b").is_err());
        assert!(check_variant_list("noop").is_err());
        assert!(check_variant_list(&format!("{};b", "a".repeat(MAX_SPEC_LEN))).is_err());
    }

    #[test]
    fn a_rate_limited_text_carries_its_delay_and_nothing_else_does() {
        let t = rate_limited_text(1500, "too many failed logins from this address");
        assert_eq!(
            t,
            "retry-after-ms=1500; too many failed logins from this address"
        );
        assert_eq!(retry_after_in_text(&t), Some(1500));
        assert_eq!(retry_after_in_text("retry-after-ms=0;"), Some(0));
        assert_eq!(
            retry_after_in_text(&rate_limited_text(u32::MAX, "")),
            Some(u32::MAX)
        );
        for other in [
            "",
            "server is at its limit of 10 connections",
            "retry-after-ms=;",
            "retry-after-ms=12",
            "retry-after-ms=-1; x",
            "retry-after-ms=1 2; x",
            "retry-after-ms=99999999999; x",
            " retry-after-ms=5; x",
        ] {
            assert_eq!(retry_after_in_text(other), None, "{other:?}");
        }
        // The prefix survives the sender's truncation to MAX_ERROR_TEXT.
        let long = rate_limited_text(7, &"x".repeat(4000));
        let mut body = Vec::new();
        encode_error(407, &long, &mut body);
        let (_, text) = parse_error(&body).unwrap();
        assert_eq!(retry_after_in_text(text), Some(7));
    }
}
