//! Raw declarations of libnetproto's C ABI, mirroring `libnetproto/include/netproto.h`.
//!
//! Trust boundary: the one place in the workspace that declares the library's C functions;
//! everything else goes through the safe wrappers in this crate.

#![allow(non_camel_case_types)]

use std::ffi::c_char;

pub type np_status = u32;

pub const NP_OK: np_status = 0;
pub const NP_NO_EVENT: np_status = 1;
pub const NP_WOULD_BLOCK: np_status = 2;
pub const NP_EOF: np_status = 3;
pub const NP_TIMEOUT: np_status = 4;
pub const NP_INPUT_FULL: np_status = 5;
pub const NP_NULL_ARGUMENT: np_status = 100;
pub const NP_INVALID_ARGUMENT: np_status = 101;
pub const NP_BUFFER_TOO_SMALL: np_status = 102;
pub const NP_BAD_STATE: np_status = 103;
pub const NP_PANIC: np_status = 104;
pub const NP_CLOSED: np_status = 105;
pub const NP_BAD_MAGIC: np_status = 200;
pub const NP_BAD_VERSION: np_status = 201;
pub const NP_FRAME_TOO_LARGE: np_status = 202;
pub const NP_BAD_CRC: np_status = 203;
pub const NP_UNKNOWN_OPCODE: np_status = 204;
pub const NP_BAD_FLAGS: np_status = 205;
pub const NP_BAD_RESERVED: np_status = 206;
pub const NP_MALFORMED: np_status = 207;
pub const NP_UNEXPECTED_MESSAGE: np_status = 208;
pub const NP_DECRYPT_FAILED: np_status = 300;
pub const NP_HANDSHAKE_FAILED: np_status = 301;
pub const NP_AUTH_FAILED: np_status = 302;
pub const NP_BAD_SERVER_SIGNATURE: np_status = 303;
pub const NP_SERVER_KEY_CHANGED: np_status = 304;
pub const NP_SERVER_KEY_REJECTED: np_status = 305;
pub const NP_NONCE_EXHAUSTED: np_status = 306;
pub const NP_REMOTE_ERROR: np_status = 400;
pub const NP_BUSY: np_status = 401;
pub const NP_SERVER_SHUTDOWN: np_status = 402;
pub const NP_IO: np_status = 500;
pub const NP_KEY_FILE: np_status = 501;

pub type np_event_kind = u32;
pub const NP_EVENT_SERVER_KEY: np_event_kind = 1;
pub const NP_EVENT_READY: np_event_kind = 2;
pub const NP_EVENT_LOGGED_IN: np_event_kind = 3;
pub const NP_EVENT_JOB_SUBMIT: np_event_kind = 4;
pub const NP_EVENT_JOB_DATA: np_event_kind = 5;
pub const NP_EVENT_JOB_RESULT: np_event_kind = 6;
pub const NP_EVENT_RESULT_DATA: np_event_kind = 7;
pub const NP_EVENT_ERROR: np_event_kind = 8;
pub const NP_EVENT_BUSY: np_event_kind = 9;
pub const NP_EVENT_PING: np_event_kind = 10;
pub const NP_EVENT_PONG: np_event_kind = 11;
pub const NP_EVENT_STATS_REQUEST: np_event_kind = 12;
pub const NP_EVENT_STATS: np_event_kind = 13;
pub const NP_EVENT_SHUTDOWN: np_event_kind = 14;
pub const NP_EVENT_BYE: np_event_kind = 15;

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
    pub fn np_status_str(status: np_status) -> *const c_char;
    pub fn np_version() -> *const c_char;
    pub fn np_last_error(out: *mut c_char, cap: usize, len: *mut usize) -> np_status;
    pub fn np_log_init(spec: *const c_char, tag: *const c_char) -> np_status;
    pub fn np_random(buf: *mut u8, len: usize) -> np_status;
    pub fn np_fingerprint(
        key: *const u8,
        out: *mut c_char,
        cap: usize,
        len: *mut usize,
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

    pub fn np_conn_new_server(cfg: *const np_server_config, out: *mut *mut np_conn) -> np_status;
    pub fn np_conn_new_client(cfg: *const np_client_config, out: *mut *mut np_conn) -> np_status;
    pub fn np_conn_free(conn: *mut np_conn);
    pub fn np_conn_feed(
        conn: *mut np_conn,
        data: *const u8,
        len: usize,
        consumed: *mut usize,
    ) -> np_status;
    pub fn np_conn_read_fd(conn: *mut np_conn, fd: i32, nread: *mut usize) -> np_status;
    pub fn np_conn_write_fd(conn: *mut np_conn, fd: i32, pending: *mut usize) -> np_status;
    pub fn np_conn_pending_output(
        conn: *const np_conn,
        data: *mut *const u8,
        len: *mut usize,
    ) -> np_status;
    pub fn np_conn_consume_output(conn: *mut np_conn, n: usize) -> np_status;
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

// ----- connection timers and times (the end of capi/conn.rs and capi/config.rs) -----

/// Which timer `np_conn_handle_timeout` acted on (`enum np_timer` in the header).
pub type np_timer = u32;
pub const NP_TIMER_NONE: np_timer = 0;
pub const NP_TIMER_HANDSHAKE: np_timer = 1;
pub const NP_TIMER_IDLE: np_timer = 2;
pub const NP_TIMER_SLOW_PEER: np_timer = 3;
pub const NP_TIMER_HEARTBEAT: np_timer = 4;
pub const NP_TIMER_DEAD_PEER: np_timer = 5;

extern "C" {
    pub fn np_now_us() -> u64;
    pub fn np_conn_new_server_at(
        cfg: *const np_server_config,
        now_us: u64,
        out: *mut *mut np_conn,
    ) -> np_status;
    pub fn np_conn_new_client_at(
        cfg: *const np_client_config,
        now_us: u64,
        out: *mut *mut np_conn,
    ) -> np_status;
    pub fn np_conn_feed_at(
        conn: *mut np_conn,
        data: *const u8,
        len: usize,
        now_us: u64,
        consumed: *mut usize,
    ) -> np_status;
    pub fn np_conn_read_fd_at(
        conn: *mut np_conn,
        fd: i32,
        now_us: u64,
        nread: *mut usize,
    ) -> np_status;
    pub fn np_conn_write_fd_at(
        conn: *mut np_conn,
        fd: i32,
        now_us: u64,
        pending: *mut usize,
    ) -> np_status;
    pub fn np_conn_consume_output_at(conn: *mut np_conn, n: usize, now_us: u64) -> np_status;
    pub fn np_conn_poll_timeout(conn: *const np_conn, deadline_us: *mut u64) -> np_status;
    pub fn np_conn_handle_timeout(
        conn: *mut np_conn,
        now_us: u64,
        fired: *mut np_timer,
    ) -> np_status;
    pub fn np_conn_is_server(conn: *const np_conn) -> bool;
    pub fn np_server_config_set_timeouts(
        cfg: *mut np_server_config,
        handshake_ms: u32,
        idle_ms: u32,
        slow_peer_ms: u32,
    ) -> np_status;
    pub fn np_client_config_set_timers(
        cfg: *mut np_client_config,
        heartbeat_ms: u32,
        dead_after_ms: u32,
    ) -> np_status;
}
