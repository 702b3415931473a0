//! Owned handles for client credentials and server configuration.

use std::path::Path;

use crate::{check, cstring, ffi, NpError, Result};

/// Client credentials; one config serves any number of connections and threads.
pub struct ClientConfig {
    /// Non-NULL, from np_client_config_new, owned by this value and freed only in `Drop`.
    pub(crate) raw: *mut ffi::np_client_config,
}

// SAFETY: the handle is a boxed Arc of plain data with no thread-affine state, so it may be
// freed or used from another thread.
unsafe impl Send for ClientConfig {}
// SAFETY: the only calls through `&self` (np_conn_new_client, np_client_connect) read the
// config and clone its Arc, which is safe from many threads at once; the one call that
// changes it (np_client_config_set_timers) needs `&mut self`, so it never runs beside them.
unsafe impl Sync for ClientConfig {}

impl ClientConfig {
    pub fn new(user: &str, password: &[u8]) -> Result<ClientConfig> {
        let u = cstring(user)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `u` is a NUL-terminated CString and `password` a slice valid for its length,
        // both alive for the call (the library copies them); `raw` is a writable local.
        check(unsafe {
            ffi::np_client_config_new(u.as_ptr(), password.as_ptr(), password.len(), &mut raw)
        })?;
        Ok(ClientConfig { raw })
    }
}

impl Drop for ClientConfig {
    fn drop(&mut self) {
        // SAFETY: `raw` came from np_client_config_new (the field's invariant) and this value
        // owns it; Drop runs once, and connections keep their own reference, so nothing uses
        // the handle afterwards.
        unsafe { ffi::np_client_config_free(self.raw) }
    }
}

/// Limits the server announces in the handshake.
#[derive(Debug, Clone, Copy)]
pub struct ServerParams {
    pub max_chunk: u32,
    pub max_upload: u64,
    pub max_in_flight: u32,
}

/// Server identity and users. Add users before making connections.
pub struct ServerConfig {
    /// Non-NULL, from np_server_config_new, owned by this value and freed only in `Drop`.
    pub(crate) raw: *mut ffi::np_server_config,
    public_key: [u8; 32],
    created: bool,
}

// SAFETY: the handle is a boxed Arc of plain data with no thread-affine state, so it may be
// freed or used from another thread.
unsafe impl Send for ServerConfig {}
// SAFETY: the only call through `&self` (np_conn_new_server) reads the config and clones its
// Arc, safe from many threads at once; the calls that change it (add_user, set_timeouts) need
// `&mut self`, so they never run beside it.
unsafe impl Sync for ServerConfig {}

impl ServerConfig {
    /// Loads (or creates, mode 0600) the server key at `key_path`.
    pub fn new(key_path: &Path, params: ServerParams) -> Result<ServerConfig> {
        let p = cstring(&key_path.to_string_lossy())?;
        let params = ffi::np_server_params {
            max_chunk: params.max_chunk,
            max_upload: params.max_upload,
            max_in_flight: params.max_in_flight,
        };
        let mut raw = std::ptr::null_mut();
        let mut created = false;
        let mut public_key = [0u8; 32];
        // SAFETY: `p` is a NUL-terminated CString, `params` a live np_server_params, and `raw`,
        // `created` and the 32-byte `public_key` are writable locals of the sizes the header
        // names; all outlive the call, which keeps none of them.
        check(unsafe {
            ffi::np_server_config_new(
                p.as_ptr(),
                &params,
                &mut raw,
                &mut created,
                public_key.as_mut_ptr(),
            )
        })?;
        Ok(ServerConfig {
            raw,
            public_key,
            created,
        })
    }

    pub fn add_user(&mut self, user: &str, verifier: &str) -> Result<()> {
        let (u, v) = (cstring(user)?, cstring(verifier)?);
        // SAFETY: `self.raw` is live (the field's invariant) and `&mut self` makes this the
        // only call on it; `u` and `v` are NUL-terminated CStrings alive for the call.
        check(unsafe { ffi::np_server_config_add_user(self.raw, u.as_ptr(), v.as_ptr()) })
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Whether the key file was created by this call (first start).
    pub fn key_created(&self) -> bool {
        self.created
    }
}

impl Drop for ServerConfig {
    fn drop(&mut self) {
        // SAFETY: `raw` came from np_server_config_new (the field's invariant) and this value
        // owns it; Drop runs once, and connections keep their own reference.
        unsafe { ffi::np_server_config_free(self.raw) }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerConfig({})", crate::fingerprint(&self.public_key))
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientConfig")
    }
}

#[allow(dead_code)]
fn _assert_error_is_send(e: NpError) -> impl Send {
    e
}
