//! Raw declarations of libnetproto's C ABI, matching `libnetproto/include/netproto.h`.
//!
//! Trust boundary: the one place in the workspace that declares the library's C functions;
//! everything else goes through the safe wrappers in this crate. The numbers are not copied
//! here: they come from the library's wire table through `include!` (see `wire_table!`).

#![allow(non_camel_case_types)]

use std::ffi::c_char;

/// Expands the library's wire table (`libnetproto/src/wire_table.rs`) into this crate's
/// constants and [`ErrorCode`]. A source include, not a dependency: nothing of the Rust crate
/// is linked, and the numbers cannot drift from the library's (tests/abi.rs also checks them
/// against the committed header).
macro_rules! wire_table {
    (
        opcodes {
            $( $(#[$om:meta])* $op:ident = $opn:literal, $opname:literal, chunked: $chunked:literal; )*
        }
        error_codes {
            $( $(#[$em:meta])* $ec:ident = $ecn:literal, $ecname:literal,
               retryable: $retry:literal, reserved: $reserved:literal; )*
        }
        statuses {
            $( $st:ident = $stn:literal, $stdesc:literal; )*
        }
        event_kinds {
            $( $ek:ident = $ekn:literal, $ekdesc:literal; )*
        }
        timer_kinds {
            $( $tk:ident = $tkn:literal, $tkdesc:literal; )*
        }
        limits {
            $( $(#[$lm:meta])* $lim:ident : $lty:ty = $lval:expr; )*
        }
    ) => {
        /// Status of a library call: one of the `NP_*` numbers below (a plain integer, since
        /// the library may return a number this binding does not know yet).
        pub type np_status = u32;
        $( #[doc = $stdesc] pub const $st: np_status = $stn; )*

        /// Every status as (name, number).
        pub const STATUSES: &[(&str, np_status)] = &[$((stringify!($st), $stn)),*];

        /// Kind of an `np_event`.
        pub type np_event_kind = u32;
        $( #[doc = $ekdesc] pub const $ek: np_event_kind = $ekn; )*

        /// Which timer `np_conn_handle_timeout` acted on (`enum np_timer` in the header).
        pub type np_timer = u32;
        $( #[doc = $tkdesc] pub const $tk: np_timer = $tkn; )*

        /// Protocol v1 size limits (`NP_<NAME>` in netproto.h).
        pub mod limits {
            $( $(#[$lm])* pub const $lim: $lty = $lval; )*
        }

        /// Wire error codes carried in ERROR frames (docs/PROTOCOL.md, "Error codes").
        #[repr(u16)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$em])* $ec = $ecn, )*
        }

        impl ErrorCode {
            /// Every error code, reserved ones included.
            pub const ALL: [ErrorCode; [$(stringify!($ec)),*].len()] = [$(ErrorCode::$ec),*];

            /// The code with wire number `v`, if there is one.
            pub fn from_u16(v: u16) -> Option<ErrorCode> {
                match v {
                    $( $ecn => Some(ErrorCode::$ec), )*
                    _ => None,
                }
            }

            /// The protocol name, e.g. "TOO_MANY_PIXELS".
            pub fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$ec => $ecname, )*
                }
            }

            /// Whether the same request may succeed later.
            pub fn is_retryable(self) -> bool {
                match self {
                    $( ErrorCode::$ec => $retry, )*
                }
            }

            /// Whether the number is retired (no v1 peer sends it; it is never reused).
            pub fn is_reserved(self) -> bool {
                match self {
                    $( ErrorCode::$ec => $reserved, )*
                }
            }
        }

        /// Every number the C header defines, as (C name, value): statuses, event kinds,
        /// `NP_ERROR_*` codes and `NP_*` limits. tests/abi.rs compares it with netproto.h.
        pub const C_NUMBERS: &[(&str, u64)] = &[
            $( (stringify!($st), $stn), )*
            $( (stringify!($ek), $ekn), )*
            $( (stringify!($tk), $tkn), )*
            $( (concat!("NP_ERROR_", $ecname), $ecn), )*
            $( (concat!("NP_", stringify!($lim)), limits::$lim as u64), )*
        ];
    };
}

include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../libnetproto/src/wire_table.rs"
));

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct np_result_info {
    pub total_len: u64,
    pub width: u32,
    pub height: u32,
    pub format: u8,
    pub queue_us: u32,
    pub decode_us: u32,
    pub filter_us: u32,
    pub encode_us: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct np_event {
    pub kind: np_event_kind,
    pub request_id: u64,
    pub code: u32,
    pub last: bool,
    /// VARIANT_RESULT / VARIANT_ERROR: the variant's 0-based index (in what was padding).
    pub variant: u8,
    pub total_len: u64,
    pub data: *const u8,
    pub data_len: usize,
    pub text: *const u8,
    pub text_len: usize,
    pub info: np_result_info,
    pub server_key: [u8; 32],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct np_server_params {
    pub max_chunk: u32,
    pub max_upload: u64,
    pub max_in_flight: u32,
}

#[repr(C)]
pub struct np_client_config {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct np_server_config {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct np_conn {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct np_client {
    _opaque: [u8; 0],
}

extern "C" {
    pub fn np_status_str(status: u32) -> *const c_char;
    pub fn np_version() -> *const c_char;
    pub fn np_last_error(out: *mut c_char, cap: usize, len: *mut usize) -> np_status;
    pub fn np_last_error_code() -> u16;
    pub fn np_last_error_retry_after_ms() -> u32;
    pub fn np_log_init(spec: *const c_char, tag: *const c_char) -> np_status;
    pub fn np_random_fill(buf: *mut u8, len: usize) -> np_status;
    pub fn np_key_fingerprint(
        key: *const u8,
        out: *mut c_char,
        cap: usize,
        len: *mut usize,
    ) -> np_status;
    pub fn np_known_servers_check(
        path: *const c_char,
        host: *const c_char,
        key: *const u8,
        pinned_now: *mut bool,
    ) -> np_status;
    pub fn np_verifier_create(
        password: *const u8,
        password_len: usize,
        iterations: u32,
        out: *mut c_char,
        cap: usize,
        len: *mut usize,
    ) -> np_status;
    pub fn np_verifier_check(text: *const c_char) -> np_status;
    pub fn np_error_code_name(code: u16) -> *const c_char;
    pub fn np_error_code_is_retryable(code: u16) -> bool;
    pub fn np_error_text_retry_after(
        text: *const u8,
        text_len: usize,
        retry_after_ms: *mut u32,
    ) -> np_status;

    pub fn np_client_config_new(
        user: *const c_char,
        password: *const u8,
        password_len: usize,
        out: *mut *mut np_client_config,
    ) -> np_status;
    pub fn np_client_config_free(cfg: *mut np_client_config);
    pub fn np_server_config_new(
        key_path: *const c_char,
        params: *const np_server_params,
        out: *mut *mut np_server_config,
        created: *mut bool,
        public_key: *mut u8,
    ) -> np_status;
    pub fn np_server_config_add_user(
        cfg: *mut np_server_config,
        user: *const c_char,
        verifier: *const c_char,
    ) -> np_status;
    pub fn np_server_config_free(cfg: *mut np_server_config);
    pub fn np_server_config_set_timeouts(
        cfg: *mut np_server_config,
        handshake_ms: u32,
        idle_ms: u32,
        slow_peer_ms: u32,
    ) -> np_status;
    pub fn np_server_config_set_frame_timeout(
        cfg: *mut np_server_config,
        frame_ms: u32,
    ) -> np_status;
    pub fn np_client_config_set_timers(
        cfg: *mut np_client_config,
        heartbeat_ms: u32,
        dead_after_ms: u32,
    ) -> np_status;
    pub fn np_server_config_set_hello_timeout(
        cfg: *mut np_server_config,
        hello_ms: u32,
    ) -> np_status;
    pub fn np_server_config_set_request_rate(
        cfg: *mut np_server_config,
        per_second: u32,
        burst: u32,
    ) -> np_status;

    pub fn np_clock_now_us() -> u64;
    pub fn np_conn_new_server(
        cfg: *const np_server_config,
        now_us: u64,
        out: *mut *mut np_conn,
    ) -> np_status;
    pub fn np_conn_new_client(
        cfg: *const np_client_config,
        now_us: u64,
        out: *mut *mut np_conn,
    ) -> np_status;
    pub fn np_conn_free(conn: *mut np_conn);
    pub fn np_conn_feed(
        conn: *mut np_conn,
        data: *const u8,
        len: usize,
        now_us: u64,
        consumed: *mut usize,
    ) -> np_status;
    pub fn np_conn_read_fd(
        conn: *mut np_conn,
        fd: i32,
        now_us: u64,
        nread: *mut usize,
    ) -> np_status;
    pub fn np_conn_write_fd(
        conn: *mut np_conn,
        fd: i32,
        now_us: u64,
        pending: *mut usize,
    ) -> np_status;
    pub fn np_conn_pending_output(
        conn: *const np_conn,
        data: *mut *const u8,
        len: *mut usize,
    ) -> np_status;
    pub fn np_conn_consume_output(conn: *mut np_conn, n: usize, now_us: u64) -> np_status;
    pub fn np_conn_poll_timeout(conn: *const np_conn, deadline_us: *mut u64) -> np_status;
    pub fn np_conn_handle_timeout(
        conn: *mut np_conn,
        now_us: u64,
        fired: *mut np_timer,
    ) -> np_status;
    pub fn np_conn_is_server(conn: *const np_conn) -> bool;
    pub fn np_conn_poll_event(conn: *mut np_conn, event: *mut np_event) -> np_status;
    pub fn np_conn_trust_server_key(conn: *mut np_conn, accept: bool) -> np_status;
    pub fn np_conn_shrink(conn: *mut np_conn) -> np_status;
    pub fn np_conn_is_ready(conn: *const np_conn) -> bool;
    pub fn np_conn_is_closed(conn: *const np_conn) -> bool;
    pub fn np_conn_user(
        conn: *const np_conn,
        out: *mut c_char,
        cap: usize,
        len: *mut usize,
    ) -> np_status;
    pub fn np_conn_send_job(
        conn: *mut np_conn,
        id: u64,
        spec: *const c_char,
        total_len: u64,
        data: *const u8,
        len: usize,
        last: bool,
    ) -> np_status;
    pub fn np_conn_send_job_multi(
        conn: *mut np_conn,
        id: u64,
        variants: *const c_char,
        total_len: u64,
        data: *const u8,
        len: usize,
        last: bool,
    ) -> np_status;
    pub fn np_conn_send_variant_result(
        conn: *mut np_conn,
        id: u64,
        index: u8,
        info: *const np_result_info,
        data: *const u8,
        len: usize,
        last: bool,
    ) -> np_status;
    pub fn np_conn_send_variant_error(
        conn: *mut np_conn,
        id: u64,
        index: u8,
        code: u16,
        text: *const c_char,
    ) -> np_status;
    pub fn np_conn_send_job_data(
        conn: *mut np_conn,
        id: u64,
        data: *const u8,
        len: usize,
        last: bool,
    ) -> np_status;
    pub fn np_conn_send_result(
        conn: *mut np_conn,
        id: u64,
        info: *const np_result_info,
        data: *const u8,
        len: usize,
        last: bool,
    ) -> np_status;
    pub fn np_conn_send_result_data(
        conn: *mut np_conn,
        id: u64,
        data: *const u8,
        len: usize,
        last: bool,
    ) -> np_status;
    pub fn np_conn_send_error(
        conn: *mut np_conn,
        id: u64,
        code: u16,
        text: *const c_char,
    ) -> np_status;
    pub fn np_conn_reject_request(
        conn: *mut np_conn,
        id: u64,
        code: u16,
        text: *const c_char,
    ) -> np_status;
    pub fn np_conn_send_busy(conn: *mut np_conn, id: u64, retry_after_ms: u32) -> np_status;
    pub fn np_conn_send_shutdown(conn: *mut np_conn, grace_ms: u32) -> np_status;
    pub fn np_conn_set_probe_status(conn: *mut np_conn, status: u32) -> np_status;
    pub fn np_probe_request(buf: *mut u8, cap: usize, out_len: *mut usize) -> np_status;
    pub fn np_probe_parse(buf: *const u8, len: usize, out_status: *mut u32) -> np_status;
    pub fn np_conn_send_stats(
        conn: *mut np_conn,
        id: u64,
        names: *const *const c_char,
        values: *const u64,
        n: usize,
    ) -> np_status;
    pub fn np_conn_send_stats_request(conn: *mut np_conn, id: u64) -> np_status;
    pub fn np_conn_send_ping(
        conn: *mut np_conn,
        id: u64,
        payload: *const u8,
        len: usize,
    ) -> np_status;
    pub fn np_conn_send_bye(conn: *mut np_conn) -> np_status;
    pub fn np_conn_send_rate_limited(
        conn: *mut np_conn,
        id: u64,
        retry_after_ms: u32,
        text: *const c_char,
    ) -> np_status;
    pub fn np_conn_login_name(
        conn: *const np_conn,
        out: *mut c_char,
        cap: usize,
        len: *mut usize,
    ) -> np_status;
    pub fn np_stats_next(
        body: *const u8,
        len: usize,
        offset: *mut usize,
        name: *mut c_char,
        cap: usize,
        value: *mut u64,
    ) -> np_status;

    pub fn np_client_connect(
        addr: *const c_char,
        cfg: *const np_client_config,
        known_servers: *const c_char,
        timeout_ms: u32,
        out: *mut *mut np_client,
        new_server: *mut bool,
    ) -> np_status;
    pub fn np_client_send_job(
        client: *mut np_client,
        id: u64,
        spec: *const c_char,
        total_len: u64,
        data: *const u8,
        len: usize,
        last: bool,
        timeout_ms: u32,
    ) -> np_status;
    pub fn np_client_send_job_multi(
        client: *mut np_client,
        id: u64,
        variants: *const c_char,
        total_len: u64,
        data: *const u8,
        len: usize,
        last: bool,
        timeout_ms: u32,
    ) -> np_status;
    pub fn np_client_send_job_data(
        client: *mut np_client,
        id: u64,
        data: *const u8,
        len: usize,
        last: bool,
        timeout_ms: u32,
    ) -> np_status;
    pub fn np_client_send_ping(
        client: *mut np_client,
        id: u64,
        payload: *const u8,
        len: usize,
        timeout_ms: u32,
    ) -> np_status;
    pub fn np_client_send_stats_request(
        client: *mut np_client,
        id: u64,
        timeout_ms: u32,
    ) -> np_status;
    pub fn np_client_next_event(
        client: *mut np_client,
        timeout_ms: u32,
        event: *mut np_event,
    ) -> np_status;
    pub fn np_client_server_key(client: *const np_client, out: *mut u8) -> np_status;
    pub fn np_client_fd(client: *const np_client) -> i32;
    pub fn np_client_close(client: *mut np_client);
}
