//! The C ABI's status codes: one stable number per outcome, grouped in ranges by cause.
//!
//! Trust boundary: the numbers C sees. They are declared once, in the wire table
//! (`src/wire_table.rs`); `np_status` itself lives in the generated `capi/wire.rs`, which the
//! test at the end of this file regenerates (`make header`) and checks (`make check-header`).
//! Numbers are part of the ABI: never renumber or reuse; add new ones at the end of a range.

pub use super::wire::np_status;
use crate::error::Error;
use np_status::*;

impl From<&Error> for np_status {
    fn from(e: &Error) -> Self {
        match e {
            Error::BadMagic => NP_BAD_MAGIC,
            Error::BadVersion(_) => NP_BAD_VERSION,
            Error::FrameTooLarge { .. } => NP_FRAME_TOO_LARGE,
            Error::BadCrc { .. } => NP_BAD_CRC,
            Error::UnknownOpcode(_) => NP_UNKNOWN_OPCODE,
            Error::BadFlags(_) => NP_BAD_FLAGS,
            Error::BadReserved => NP_BAD_RESERVED,
            Error::Malformed(_) => NP_MALFORMED,
            Error::UnexpectedMessage { .. } => NP_UNEXPECTED_MESSAGE,
            Error::DecryptFailed => NP_DECRYPT_FAILED,
            Error::HandshakeFailed(_) => NP_HANDSHAKE_FAILED,
            Error::AuthFailed => NP_AUTH_FAILED,
            Error::BadServerSignature => NP_BAD_SERVER_SIGNATURE,
            Error::ServerKeyChanged { .. } => NP_SERVER_KEY_CHANGED,
            Error::ServerKeyRejected => NP_SERVER_KEY_REJECTED,
            Error::NonceExhausted => NP_NONCE_EXHAUSTED,
            Error::Remote { .. } => NP_REMOTE_ERROR,
            Error::NotSupported { .. } => NP_NOT_SUPPORTED,
            Error::Busy { .. } => NP_BUSY,
            Error::ServerShutdown => NP_SERVER_SHUTDOWN,
            Error::InvalidArgument(_) => NP_INVALID_ARGUMENT,
            Error::BadState(_) => NP_BAD_STATE,
            Error::Closed => NP_CLOSED,
            Error::Io { .. } => NP_IO,
            Error::Timeout(_) => NP_TIMEOUT,
            Error::PeerSilent { .. } => NP_PEER_SILENT,
            Error::Eof => NP_EOF,
            Error::KeyFile { .. } => NP_KEY_FILE,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use crate::wire::{limits, ERROR_CODES, EVENT_KINDS, STATUSES, TIMER_KINDS};

    const GENERATED: &str = include_str!("wire.rs");

    /// Renders `capi/wire.rs` from the wire table: plain items cbindgen can read (it does not
    /// expand macros), so the header's numbers follow from the table.
    fn render() -> String {
        let mut s = String::new();
        s.push_str(
            "//! The C view of the wire table, GENERATED from `src/wire_table.rs` by `make header`:\n\
             //! do not edit. cbindgen reads this file for `include/netproto.h`; the unit test in\n\
             //! `capi/status.rs` fails when it no longer matches the table.\n\
             //!\n\
             //! Trust boundary: the numbers C callers see (statuses, event kinds, wire error codes,\n\
             //! protocol limits); values arriving from C are plain integers checked against them.\n\
             #![allow(non_camel_case_types)]\n\n",
        );
        s.push_str(
            "/// Outcome of a C ABI call (`NP_OK` on success). Stable numbers, in ranges by cause.\n\
             #[repr(u32)]\n#[derive(Debug, Clone, Copy, PartialEq, Eq)]\npub enum np_status {\n",
        );
        for (name, n, desc) in STATUSES {
            let desc = desc.trim_end_matches('\0');
            writeln!(s, "    /// {}{}.", desc[..1].to_uppercase(), &desc[1..]).unwrap();
            writeln!(s, "    {name} = {n},").unwrap();
        }
        s.push_str(
            "}\n\n/// Kinds of `np_event`. Stable numbers.\n\
             #[repr(u32)]\n#[derive(Debug, Clone, Copy, PartialEq, Eq)]\npub enum np_event_kind {\n",
        );
        for (name, n, desc) in EVENT_KINDS {
            writeln!(s, "    /// {desc}\n    {name} = {n},").unwrap();
        }
        s.push_str(
            "}\n\n/// Which of a connection's own timers `np_conn_handle_timeout` acted on. Stable\n\
             /// numbers.\n#[repr(u32)]\n#[derive(Debug, Clone, Copy, PartialEq, Eq)]\npub enum np_timer {\n",
        );
        for (name, n, desc) in TIMER_KINDS {
            writeln!(s, "    /// {desc}\n    {name} = {n},").unwrap();
        }
        s.push_str("}\n");
        for (name, n, reserved) in ERROR_CODES {
            let what = if *reserved {
                "reserved: never sent, never reused"
            } else {
                "see docs/PROTOCOL.md, \"Error codes\""
            };
            writeln!(
                s,
                "\n/// Wire error code {name} ({what}).\npub const NP_ERROR_{name}: u16 = {n};"
            )
            .unwrap();
        }
        for (name, ty, value, docs) in limits::ALL {
            s.push('\n');
            for d in *docs {
                // `stringify!` renders a doc comment as `doc = r" text"` (line breaks vary).
                let text = match (d.find('"'), d.rfind('"')) {
                    (Some(a), Some(b)) if a < b => &d[a + 1..b],
                    _ => d,
                };
                writeln!(s, "///{text}").unwrap();
            }
            writeln!(s, "pub const NP_{name}: {ty} = {value};").unwrap();
        }
        s
    }

    #[test]
    fn generated_c_wire_items_match_the_table() {
        let fresh = render();
        if std::env::var_os("NP_REGENERATE_WIRE").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/capi/wire.rs");
            if fresh != GENERATED {
                std::fs::write(path, &fresh).unwrap();
                eprintln!("regenerated {path}");
            }
            return;
        }
        assert!(
            fresh == GENERATED,
            "src/capi/wire.rs is stale: run `make header` and commit"
        );
    }

    #[test]
    fn the_generated_enums_have_the_table_numbers() {
        use super::super::wire::np_event_kind;
        use super::np_status;
        // Spot checks that the compiled enums are the generated text (the test above checks
        // the text against the table).
        assert_eq!(np_status::NP_OK as u32, 0);
        assert_eq!(np_status::NP_KEY_FILE as u32, 501);
        assert_eq!(np_event_kind::NP_EVENT_BYE as u32, 15);
        assert_eq!(
            super::super::wire::NP_MAX_CHUNK_DATA,
            crate::limits::MAX_CHUNK_DATA
        );
    }
}
