//! The Rust mirror of the C ABI agrees with what libnetproto.so actually exports.

use netproto_sys::{ffi, ErrorCode};

fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[test]
fn every_error_code_has_the_same_number_and_name_in_the_library() {
    for c in ErrorCode::ALL {
        let name = netproto_sys::error::code_name(c as u16);
        assert_eq!(
            name,
            Some(screaming_snake(&format!("{c:?}")).as_str()),
            "code {}",
            c as u16
        );
    }
    assert_eq!(netproto_sys::error::code_name(9999), None);
}

#[test]
fn every_status_constant_is_known_to_the_library() {
    for &(name, value) in ffi::STATUSES {
        assert_ne!(
            netproto_sys::error::status_str(value),
            "unknown status",
            "status {name}"
        );
    }
    assert_eq!(ffi::STATUSES.len(), 35);
    assert_eq!(netproto_sys::error::status_str(77777), "unknown status");
    assert_eq!(netproto_sys::error::status_str(u32::MAX), "unknown status");
}

/// The `#define NAME NUMBER` lines and `NAME = NUMBER,` enum entries of the committed header.
fn header_numbers() -> std::collections::BTreeMap<String, u64> {
    let header = include_str!("../../libnetproto/include/netproto.h");
    let mut out = std::collections::BTreeMap::new();
    for line in header.lines() {
        let line = line.trim();
        let (name, value) = if let Some(rest) = line.strip_prefix("#define ") {
            match rest.split_once(' ') {
                Some((n, v)) => (n, v),
                None => continue,
            }
        } else if let Some((n, v)) = line.strip_suffix(',').and_then(|l| l.split_once(" = ")) {
            (n, v)
        } else {
            continue;
        };
        if let (true, Ok(v)) = (name.starts_with("NP_"), value.parse::<u64>()) {
            out.insert(name.to_string(), v);
        }
    }
    out
}

#[test]
fn the_binding_and_the_committed_header_have_the_same_numbers() {
    let header = header_numbers();
    let binding: std::collections::BTreeMap<String, u64> = ffi::C_NUMBERS
        .iter()
        .map(|&(n, v)| (n.to_string(), v))
        .collect();
    assert_eq!(
        binding.len(),
        ffi::C_NUMBERS.len(),
        "duplicate C name in the table"
    );
    assert!(header.contains_key("NP_MAX_CHUNK_DATA") && header.contains_key("NP_KEY_FILE"));
    assert_eq!(
        binding, header,
        "netproto.h and the wire table disagree: run `make header`"
    );
    assert_eq!(netproto_sys::limits::MAX_CHUNK_DATA, 64 * 1024);
}

#[test]
fn error_code_properties_come_from_the_same_table_as_the_library() {
    for c in ErrorCode::ALL {
        assert_eq!(
            netproto_sys::error::code_is_retryable(c as u16),
            c.is_retryable(),
            "{c:?}"
        );
        assert_eq!(netproto_sys::error::code_name(c as u16), Some(c.name()));
    }
    assert!(!netproto_sys::error::code_is_retryable(9999));
    assert!(netproto_sys::error::code_is_retryable(400));
}

#[test]
fn verifiers_and_fingerprints_come_from_the_library() {
    let v = netproto_sys::verifier_create(b"pw", 4096).unwrap();
    assert!(v.starts_with("scram-sha256$4096$"));
    netproto_sys::verifier_check(&v).unwrap();
    assert!(netproto_sys::verifier_check("nonsense").is_err());
    // Errors carry the library's detailed message, not just the number.
    let e = netproto_sys::verifier_create(b"", 4096).unwrap_err();
    assert!(
        e.is(ffi::NP_INVALID_ARGUMENT) && e.message.contains("empty password"),
        "{e:?}"
    );
    assert!(netproto_sys::fingerprint(&[0; 32]).starts_with("SHA256:"));
}

/// CRC-32C (Castagnoli), bitwise: enough to build one frame by hand.
fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A clear ERROR frame for the whole connection (docs/PROTOCOL.md, "Frame header").
fn clear_error_frame(code: u16, text: &str) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(&(text.len() as u16).to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    let mut h = b"NP".to_vec();
    h.push(1); // version
    h.push(0); // flags: clear, not LAST
    h.extend_from_slice(&(body.len() as u32).to_be_bytes());
    h.extend_from_slice(&0x0030u16.to_be_bytes()); // ERROR
    h.extend_from_slice(&[0, 0]); // reserved
    h.extend_from_slice(&0u64.to_be_bytes()); // request id 0: the connection
    let crc = crc32c(&[&h, &body]);
    h.extend_from_slice(&crc.to_be_bytes());
    h.extend_from_slice(&body);
    h
}

#[test]
fn a_refusal_carries_the_wire_code_as_a_number_and_the_same_text() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Take the whole HELLO (header + 34-byte body) first and wait for the client to hang
        // up afterwards, so no unread byte turns our close into a reset that could discard
        // the ERROR before the client reads it.
        let mut hello = [0u8; 24 + 34];
        s.read_exact(&mut hello).unwrap();
        s.write_all(&clear_error_frame(403, "server full")).unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    });
    let cfg = netproto_sys::ClientConfig::new("u", b"pw").unwrap();
    let Err(e) =
        netproto_sys::Client::connect(&addr, &cfg, None, std::time::Duration::from_secs(10))
    else {
        panic!("the server refused the connection, yet connect succeeded");
    };
    server.join().unwrap();
    assert_eq!(e.status, ffi::NP_REMOTE_ERROR, "{e}");
    assert_eq!(e.remote_code(), Some(403));
    assert_eq!(e.retry_after_ms(), None);
    // The text keeps the form callers parse today.
    assert!(e.message.contains("TOO_MANY_CONNECTIONS (403)"), "{e}");
    assert!(ErrorCode::from_u16(403).is_some_and(|c| c.is_retryable()));
}

#[test]
fn rate_limited_is_a_retryable_4xx_code_whose_text_carries_its_delay() {
    let c = ErrorCode::RateLimited;
    assert_eq!(
        (c as u16, c.name(), c.is_retryable()),
        (407, "RATE_LIMITED", true)
    );
    assert!(netproto_sys::error::code_is_retryable(407));
    let text = "retry-after-ms=1250; too many failed logins from this address";
    assert_eq!(netproto_sys::error::retry_after_in_text(text), Some(1250));
    assert_eq!(netproto_sys::error::retry_after_in_text("full"), None);
    assert_eq!(netproto_sys::error::retry_after_in_text(""), None);
}

#[test]
fn the_probe_wrappers_speak_the_documented_bytes() {
    use netproto_sys::{probe_parse, probe_request, Probe};
    let hex: String = probe_request().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "4e50010000000000004000000000000000000000530e5c8f");
    let ready = [
        0x4e, 0x50, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x41, 0x00, 0x00, 0, 0, 0, 0, 0, 0,
        0, 0, 0x19, 0xd6, 0x58, 0x24, 0x01,
    ];
    for cut in 0..ready.len() {
        assert_eq!(probe_parse(&ready[..cut]), Ok(None), "prefix {cut}");
    }
    assert_eq!(probe_parse(&ready), Ok(Some(Probe::Ready)));
    let mut bad = ready;
    bad[24] = 9;
    assert!(probe_parse(&bad).is_err());
    for p in [Probe::Ready, Probe::NotReady, Probe::Draining] {
        assert_eq!(Probe::from_number(p.number()), Some(p));
    }
}
