//! libFuzzer target: arbitrary bytes through the frame decoder and the message parsers.
//!
//! Trust boundary: `netproto::frame::decode` is the first code to touch network bytes; the body
//! parsers in `netproto::message` come next. The target logic (and its invariants) lives in
//! `netproto_fuzz_targets::frame_decoder`, shared with the corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    netproto_fuzz_targets::frame_decoder(data);
});
