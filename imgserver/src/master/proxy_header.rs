//! The PROXY protocol v2 header a load balancer (HAProxy's `send-proxy-v2`) puts in front of
//! the client's bytes, telling the server whom it is relaying: the sources that may send it
//! (`--proxy-from`), the state of a connection before its first protocol byte, and the parse
//! of the header itself. Pure: bytes in, a [`Step`] out; `conns` does the reading, and reads
//! no byte past the header (the protocol connection then reads its own bytes from the socket
//! as for any other client).
//!
//! The header is parsed by the `ppp` crate: maintained, used in production proxies, no
//! `unsafe`, and it reports both "more bytes needed" and the declared length before the rest
//! arrives, which the bound below needs. What this part adds is policy: the binary form only
//! (a v1 text header is refused: HAProxy's `send-proxy-v2` never sends one, and a text line
//! would need a second parser at the trust boundary), a header of at most [`MAX_HEADER`]
//! bytes (the declared length is checked before the bytes are waited for, so a peer cannot
//! make the server hold 64 KiB of TLVs), TLVs that are well formed, and a PROXY command that
//! carries a TCP connection over IPv4 or IPv6; a LOCAL command (a health check) keeps the
//! real peer's address.
//!
//! Trust boundary: the header is believed only from a listed source; from any other source,
//! the first bytes are only looked at (peeked) for the v2 signature, and a connection that
//! begins with it is refused: a direct client must not choose its own address.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use ppp::v2::{self, Addresses, Command, ParseError, Protocol};

/// The 12 bytes every v2 header begins with (the protocol's own first bytes never do).
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest header accepted, TLVs included: addresses take at most 36 bytes after the
/// fixed 16, HAProxy's usual TLVs (unique id, authority, SSL) a few hundred at most.
pub const MAX_HEADER: usize = 512;

/// The fixed part: signature, version and command, family and protocol, length.
const FIXED: usize = 16;

/// The sources a header is accepted from: IP addresses and CIDR prefixes (`--proxy-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFrom(Vec<IpNet>);

impl ProxyFrom {
    /// Whether `ip` is listed (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for ProxyFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<ProxyFrom, String> {
        let mut nets = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = if item.contains('/') {
                item.parse::<IpNet>().ok().map(|n| n.trunc())
            } else {
                item.parse::<IpAddr>().ok().map(IpNet::from)
            };
            let Some(net) = net else {
                return Err(format!(
                    "`{item}` is not an IP address or CIDR prefix (such as 10.0.0.5, \
                     10.0.0.0/8 or ::1)"
                ));
            };
            nets.push(net);
        }
        if nets.is_empty() {
            return Err("no address or prefix given".into());
        }
        Ok(ProxyFrom(nets))
    }
}

impl std::fmt::Display for ProxyFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            // A single address as the operator wrote it, not as a /32.
            if n.prefix_len() == n.max_prefix_len() {
                write!(f, "{}", n.addr())?;
            } else {
                write!(f, "{n}")?;
            }
        }
        Ok(())
    }
}

/// Whose connection a complete header says this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// LOCAL: the proxy speaking for itself (a health check); the real peer's address stays.
    Local,
    /// PROXY: the client's address and port as the proxy saw them.
    Client(SocketAddr),
}

/// Why a header (or its absence) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no PROXY protocol v2 header (the first bytes are not its signature)")]
    NoHeader,
    #[error("a PROXY protocol v1 (text) header; only the binary v2 form is accepted")]
    TextForm,
    #[error("a PROXY header of {0} bytes, over the limit of {MAX_HEADER}")]
    TooLong(usize),
    #[error("a malformed PROXY v2 header: {0}")]
    Malformed(String),
    #[error("a PROXY header carrying {0}, not a TCP connection over IPv4 or IPv6")]
    NotTcp(&'static str),
}

/// Where the bytes so far leave a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// A complete header of `len` bytes.
    Done {
        carried: Carried,
        len: usize,
    },
    Refused(Refusal),
}

/// Parses a header at the start of `bytes` (bytes after it are ignored).
pub fn parse(bytes: &[u8]) -> Step {
    let n = bytes.len().min(SIGNATURE.len());
    if bytes[..n] != SIGNATURE[..n] {
        return Step::Refused(if bytes.starts_with(b"PROXY") {
            Refusal::TextForm
        } else {
            Refusal::NoHeader
        });
    }
    let header = match v2::Header::try_from(bytes) {
        Ok(h) => h,
        Err(ParseError::Incomplete(_)) => return Step::Incomplete,
        Err(ParseError::Partial(_, declared)) if FIXED + declared > MAX_HEADER => {
            return Step::Refused(Refusal::TooLong(FIXED + declared))
        }
        Err(ParseError::Partial(..)) => return Step::Incomplete,
        Err(e) => return Step::Refused(Refusal::Malformed(e.to_string())),
    };
    let len = header.len();
    if len > MAX_HEADER {
        return Step::Refused(Refusal::TooLong(len));
    }
    if let Some(Err(e)) = header.tlvs().find(Result::is_err) {
        return Step::Refused(Refusal::Malformed(format!("TLVs: {e}")));
    }
    let carried = match header.command {
        Command::Local => Carried::Local,
        Command::Proxy => match (header.protocol, header.addresses) {
            (Protocol::Stream, Addresses::IPv4(a)) => {
                Carried::Client(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (Protocol::Stream, Addresses::IPv6(a)) => {
                Carried::Client(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (_, Addresses::Unix(_)) => return Step::Refused(Refusal::NotTcp("a UNIX socket")),
            (_, Addresses::Unspecified) => return Step::Refused(Refusal::NotTcp("no address")),
            (_, _) => return Step::Refused(Refusal::NotTcp("a datagram or unknown protocol")),
        },
    };
    Step::Done { carried, len }
}

/// What a connection's first bytes are, from a source that may not send a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// Not a header: a direct client.
    Direct,
    /// The v2 signature.
    Header,
    /// A prefix of the signature (or nothing yet): look again when more has arrived.
    Undecided,
}

/// Looks at the first bytes of a connection from an unlisted source.
pub fn sniff(first: &[u8]) -> Sniff {
    let n = first.len().min(SIGNATURE.len());
    if first[..n] != SIGNATURE[..n] {
        Sniff::Direct
    } else if n == SIGNATURE.len() {
        Sniff::Header
    } else {
        Sniff::Undecided
    }
}

/// A header being read: never asks for a byte past its end, so what follows stays in the
/// socket for the protocol connection.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    /// How many bytes to read next (at least one, at most what completes the header as far
    /// as its length is known).
    pub fn want(&self) -> usize {
        let have = self.buf.len();
        if have < FIXED {
            return FIXED - have;
        }
        let declared = u16::from_be_bytes([self.buf[14], self.buf[15]]) as usize;
        (FIXED + declared)
            .min(MAX_HEADER)
            .saturating_sub(have)
            .max(1)
    }

    /// Takes bytes read (at most [`want`](Self::want) of them).
    pub fn push(&mut self, bytes: &[u8]) -> Step {
        self.buf.extend_from_slice(bytes);
        parse(&self.buf)
    }
}

/// Where a connection is before its first protocol byte.
#[derive(Debug)]
pub enum Preamble {
    /// Nothing to wait for (the PROXY protocol is off, or the source was decided).
    None,
    /// An unlisted source: its first bytes are looked at for the v2 signature.
    Sniff,
    /// A listed source: the header comes first.
    Header(Reader),
}

impl Preamble {
    /// The state of a new connection from `peer`, given the listed sources (`None`: the
    /// PROXY protocol is off).
    pub fn for_peer(from: Option<&ProxyFrom>, peer: IpAddr) -> Preamble {
        match from {
            None => Preamble::None,
            Some(f) if f.contains(peer) => Preamble::Header(Reader::default()),
            Some(_) => Preamble::Sniff,
        }
    }

    /// Whether the connection waits for a header (and so has not been through admission).
    pub fn awaits_header(&self) -> bool {
        matches!(self, Preamble::Header(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn tcp4(src: [u8; 4], port: u16) -> Vec<u8> {
        let mut body = src.to_vec();
        body.extend_from_slice(&[10, 0, 0, 1]);
        body.extend_from_slice(&port.to_be_bytes());
        body.extend_from_slice(&7878u16.to_be_bytes());
        v2(1, 0x11, &body)
    }

    #[test]
    fn a_tcp4_header_carries_the_client_and_its_length() {
        let mut h = tcp4([192, 0, 2, 7], 40000);
        h.extend_from_slice(b"NPv1 the protocol's first frame");
        assert_eq!(
            parse(&h),
            Step::Done {
                carried: Carried::Client("192.0.2.7:40000".parse().unwrap()),
                len: 28
            }
        );
    }

    #[test]
    fn a_tcp6_header_carries_the_client() {
        let src: std::net::Ipv6Addr = "2001:db8::42".parse().unwrap();
        let mut body = src.octets().to_vec();
        body.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&5555u16.to_be_bytes());
        body.extend_from_slice(&7878u16.to_be_bytes());
        let h = v2(1, 0x21, &body);
        assert_eq!(
            parse(&h),
            Step::Done {
                carried: Carried::Client("[2001:db8::42]:5555".parse().unwrap()),
                len: 16 + 36
            }
        );
    }

    #[test]
    fn local_keeps_the_peer_whatever_addresses_follow() {
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Step::Done {
                carried: Carried::Local,
                len: 16
            }
        );
        let mut h = tcp4([192, 0, 2, 7], 1);
        h[12] = 0x20;
        assert!(matches!(
            parse(&h),
            Step::Done {
                carried: Carried::Local,
                ..
            }
        ));
    }

    #[test]
    fn every_truncation_is_incomplete_and_the_reader_never_reads_past_the_end() {
        let h = tcp4([192, 0, 2, 7], 40000);
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut]), Step::Incomplete, "cut at {cut}");
        }
        // Byte by byte and in the reader's own sizes, it asks for exactly the header.
        let mut r = Reader::default();
        let mut at = 0;
        loop {
            let n = r.want();
            assert!(at + n <= h.len(), "asked past the end at {at}");
            match r.push(&h[at..at + n]) {
                Step::Incomplete => at += n,
                Step::Done { len, .. } => {
                    assert_eq!(len, at + n);
                    break;
                }
                s => panic!("{s:?}"),
            }
        }
    }

    #[test]
    fn malformed_headers_are_refused_with_their_reason() {
        let h = tcp4([192, 0, 2, 7], 1);
        let mut bad_version = h.clone();
        bad_version[12] = 0x11;
        let mut bad_command = h.clone();
        bad_command[12] = 0x2f;
        let mut bad_family = h.clone();
        bad_family[13] = 0x41;
        let mut short_addresses = h.clone();
        short_addresses[15] = 4;
        for (name, bytes) in [
            ("version", bad_version),
            ("command", bad_command),
            ("family", bad_family),
            ("addresses", short_addresses),
        ] {
            assert!(
                matches!(parse(&bytes), Step::Refused(Refusal::Malformed(_))),
                "{name}: {:?}",
                parse(&bytes)
            );
        }
        // A TLV whose length runs past the header.
        let mut body = tcp4([192, 0, 2, 7], 1)[16..].to_vec();
        body.extend_from_slice(&[0x04, 0x00, 0x09, 1]);
        assert!(matches!(
            parse(&v2(1, 0x11, &body)),
            Step::Refused(Refusal::Malformed(_))
        ));
        // Not TCP: UDP over IPv4, a UNIX socket, no address with PROXY.
        assert!(matches!(
            parse(&v2(1, 0x12, &body[..12])),
            Step::Refused(Refusal::NotTcp(_))
        ));
        assert!(matches!(
            parse(&v2(1, 0x31, &[0; 216])),
            Step::Refused(Refusal::NotTcp(_))
        ));
        assert!(matches!(
            parse(&v2(1, 0x00, &[])),
            Step::Refused(Refusal::NotTcp(_))
        ));
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_bytes_arrive() {
        let mut body = tcp4([192, 0, 2, 7], 1)[16..].to_vec();
        // A well-formed NOOP TLV that takes the header past the cap.
        body.extend_from_slice(&[0x04, 0x02, 0x00]);
        body.extend_from_slice(&[0; 512]);
        let h = v2(1, 0x11, &body);
        assert_eq!(parse(&h[..16]), Step::Refused(Refusal::TooLong(h.len())));
        assert_eq!(parse(&h), Step::Refused(Refusal::TooLong(h.len())));
        // One at the cap is fine, TLVs and all.
        let mut body = tcp4([192, 0, 2, 7], 1)[16..].to_vec();
        let pad = MAX_HEADER - 16 - body.len() - 3;
        body.extend_from_slice(&[0x04]);
        body.extend_from_slice(&(pad as u16).to_be_bytes());
        body.extend_from_slice(&vec![0; pad]);
        let h = v2(1, 0x11, &body);
        assert_eq!(h.len(), MAX_HEADER);
        assert!(matches!(
            parse(&h),
            Step::Done {
                len: MAX_HEADER,
                ..
            }
        ));
    }

    #[test]
    fn v1_text_and_protocol_bytes_are_not_a_header() {
        assert_eq!(
            parse(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 7878\r\n"),
            Step::Refused(Refusal::TextForm)
        );
        assert_eq!(parse(b"NPv1\0\0\0"), Step::Refused(Refusal::NoHeader));
        assert_eq!(
            parse(b"\r\n\r\n\0\r\nQUIX"),
            Step::Refused(Refusal::NoHeader)
        );
    }

    #[test]
    fn sniffing_decides_on_the_first_differing_byte() {
        assert_eq!(sniff(b""), Sniff::Undecided);
        assert_eq!(sniff(b"\r\n\r"), Sniff::Undecided);
        assert_eq!(sniff(b"N"), Sniff::Direct);
        assert_eq!(sniff(b"\r\n\r\n\0\r\nQUIX"), Sniff::Direct);
        assert_eq!(sniff(&SIGNATURE), Sniff::Header);
        assert_eq!(sniff(&tcp4([1, 2, 3, 4], 5)), Sniff::Header);
    }

    #[test]
    fn proxy_from_takes_addresses_and_prefixes_and_says_what_is_wrong() {
        let p: ProxyFrom = "127.0.0.1, ::1,10.1.0.0/16".parse().unwrap();
        assert_eq!(p.to_string(), "127.0.0.1,::1,10.1.0.0/16");
        assert!(p.contains("127.0.0.1".parse().unwrap()));
        assert!(p.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(p.contains("10.1.200.3".parse().unwrap()));
        assert!(!p.contains("127.0.0.2".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        // Host bits in a prefix are dropped, as `ip route` does.
        let p: ProxyFrom = "10.1.2.3/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        for bad in ["", " , ", "10.0.0", "10.0.0.0/33", "localhost", "1.2.3.4,x"] {
            let e = bad.parse::<ProxyFrom>().unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!("1.2.3.4,x"
            .parse::<ProxyFrom>()
            .unwrap_err()
            .contains("`x`"));
    }
}
