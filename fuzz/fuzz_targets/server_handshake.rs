//! libFuzzer target: a server `Conn` fed arbitrary bytes in arbitrary pieces, before and after a
//! valid HELLO, and scripted sessions of sealed frames through login into the session.
//!
//! Trust boundary: the server side of a connection faces unauthenticated peers until login
//! completes. The target logic lives in `netproto_fuzz_targets::server_handshake`, shared with
//! the corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    netproto_fuzz_targets::server_handshake(data);
});
