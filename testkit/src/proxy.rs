//! PROXY protocol v2 headers as a load balancer sends them (HAProxy's `send-proxy-v2`), built
//! byte by byte from the specification rather than by the server's parser, so a test that
//! uses them checks the parser against the wire format and not against itself.
//!
//! Trust boundary: the client side of the network; the server believes these only from its
//! --proxy-from sources.

use std::net::{SocketAddr, SocketAddrV4};

/// The 12 bytes every v2 header begins with.
pub const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A header with version 2, `command` (0 LOCAL, 1 PROXY), the family/protocol byte `fam` and
/// `body` (addresses, then TLVs).
pub fn proxy_v2(command: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = PROXY_V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(fam);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// PROXY, TCP over IPv4: the client `src` connected to `dst`.
pub fn proxy_v2_tcp4(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let mut body = src.ip().octets().to_vec();
    body.extend_from_slice(&dst.ip().octets());
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    proxy_v2(1, 0x11, &body)
}

/// PROXY for client `src` (IPv4) to the server at `dst` (an IPv4 `host:port`).
pub fn proxy_v2_for(src: &str, dst: &str) -> Vec<u8> {
    let v4 = |a: &str| match a.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(v)) => v,
        other => panic!("{a}: not an IPv4 address and port ({other:?})"),
    };
    proxy_v2_tcp4(v4(src), v4(dst))
}

/// LOCAL (a health check): no addresses.
pub fn proxy_v2_local() -> Vec<u8> {
    proxy_v2(0, 0x00, &[])
}
