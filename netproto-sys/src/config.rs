//! Owned handles for client credentials and server configuration.

use std::path::Path;

use crate::{check, cstring, ffi, NpError, Result};

/// Client credentials; one config serves any number of connections and threads.
pub struct ClientConfig {
    pub(crate) raw: *mut ffi::np_client_config,
}

// SAFETY: the library's client config is immutable after creation apart from an internal
// mutex-protected cache, so it may be shared and sent across threads.
unsafe impl Send for ClientConfig {}
// SAFETY: as above.
unsafe impl Sync for ClientConfig {}

impl ClientConfig {
    pub fn new(user: &str, password: &[u8]) -> Result<ClientConfig> {
        let u = cstring(user)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid string, password slice and out-pointer for the call.
        check(unsafe {
            ffi::np_client_config_new(u.as_ptr(), password.as_ptr(), password.len(), &mut raw)
        })?;
        Ok(ClientConfig { raw })
    }
}

impl Drop for ClientConfig {
    fn drop(&mut self) {
        // SAFETY: `raw` came from np_client_config_new and is freed once.
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
    pub(crate) raw: *mut ffi::np_server_config,
    public_key: [u8; 32],
    created: bool,
}

// SAFETY: immutable once connections exist (add_user then fails with NP_BAD_STATE), and the
// library's config is internally reference-counted.
unsafe impl Send for ServerConfig {}
// SAFETY: as above.
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
        // SAFETY: all pointers valid for the call.
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
        // SAFETY: live handle and valid strings.
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
        // SAFETY: `raw` came from np_server_config_new and is freed once.
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
