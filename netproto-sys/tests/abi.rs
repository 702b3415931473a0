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
    let all = [
        ffi::NP_OK,
        ffi::NP_NO_EVENT,
        ffi::NP_WOULD_BLOCK,
        ffi::NP_EOF,
        ffi::NP_TIMEOUT,
        ffi::NP_INPUT_FULL,
        ffi::NP_NULL_ARGUMENT,
        ffi::NP_INVALID_ARGUMENT,
        ffi::NP_BUFFER_TOO_SMALL,
        ffi::NP_BAD_STATE,
        ffi::NP_PANIC,
        ffi::NP_CLOSED,
        ffi::NP_BAD_MAGIC,
        ffi::NP_BAD_VERSION,
        ffi::NP_FRAME_TOO_LARGE,
        ffi::NP_BAD_CRC,
        ffi::NP_UNKNOWN_OPCODE,
        ffi::NP_BAD_FLAGS,
        ffi::NP_BAD_RESERVED,
        ffi::NP_MALFORMED,
        ffi::NP_UNEXPECTED_MESSAGE,
        ffi::NP_DECRYPT_FAILED,
        ffi::NP_HANDSHAKE_FAILED,
        ffi::NP_AUTH_FAILED,
        ffi::NP_BAD_SERVER_SIGNATURE,
        ffi::NP_SERVER_KEY_CHANGED,
        ffi::NP_SERVER_KEY_REJECTED,
        ffi::NP_NONCE_EXHAUSTED,
        ffi::NP_REMOTE_ERROR,
        ffi::NP_BUSY,
        ffi::NP_SERVER_SHUTDOWN,
        ffi::NP_IO,
        ffi::NP_KEY_FILE,
    ];
    for s in all {
        assert_ne!(
            netproto_sys::error::status_str(s),
            "unknown status",
            "status {s}"
        );
    }
    assert_eq!(netproto_sys::error::status_str(77777), "unknown status");
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
