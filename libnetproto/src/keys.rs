//! Server identity keys, their fingerprints, and the client's known-servers (pinning) table.
//!
//! Trust boundary: the known-servers table decides whether a server is who it was last time.
//! Parsing here is pure (text in, table out); `io` reads and writes the files.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::Error;

/// A server's long-term X25519 key pair.
pub struct ServerKey {
    secret: StaticSecret,
    public: [u8; 32],
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", fingerprint(&self.public))
    }
}

impl ServerKey {
    /// The key pair with this secret.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret).to_bytes();
        ServerKey { secret, public }
    }

    /// The public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// The secret, in memory that is wiped when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }
}

/// `SHA256:` and the unpadded base64 of SHA-256 over the public key, as SSH prints them.
pub fn fingerprint(public: &[u8; 32]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(public)))
}

/// Base64 text of a public key, as the known-servers file stores it.
pub fn encode_public(public: &[u8; 32]) -> String {
    STANDARD.encode(public)
}

/// Parses base64 text of a public key; `None` unless it is 32 bytes.
pub fn decode_public(text: &str) -> Option<[u8; 32]> {
    let v = STANDARD.decode(text.trim()).ok()?;
    v.try_into().ok()
}

/// What the pinning table says about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Pinned, and the key matches.
    Known,
    /// Never seen: trust on first use, then pin.
    New,
    /// Pinned with a different key: refuse.
    Changed {
        /// The key the host is pinned to.
        pinned: [u8; 32],
    },
}

/// The known-servers table: lines `host:port base64-key`, `#` comments, like SSH's known_hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownServers {
    entries: Vec<(String, [u8; 32])>,
}

impl KnownServers {
    /// Parses the file text; malformed lines are an error naming the line, so a damaged file
    /// is never silently treated as "no pin".
    pub fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(host), Some(key), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err((i + 1, "expected `host:port key`"));
            };
            let key = decode_public(key).ok_or((i + 1, "key is not 32 bytes of base64"))?;
            entries.push((host.to_string(), key));
        }
        Ok(KnownServers { entries })
    }

    /// How `key` compares with the key pinned for `host`.
    pub fn check(&self, host: &str, key: &[u8; 32]) -> Trust {
        match self.entries.iter().find(|(h, _)| h == host) {
            None => Trust::New,
            Some((_, k)) if k == key => Trust::Known,
            Some((_, k)) => Trust::Changed { pinned: *k },
        }
    }

    /// Pins `key` for `host` (in memory; the io layer writes the file).
    pub fn add(&mut self, host: &str, key: &[u8; 32]) -> Result<(), Error> {
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(Error::InvalidArgument(
                "host must be non-empty without whitespace",
            ));
        }
        self.entries.retain(|(h, _)| h != host);
        self.entries.push((host.to_string(), *key));
        Ok(())
    }

    /// The line that pins `host` to `key`.
    pub fn line(host: &str, key: &[u8; 32]) -> String {
        format!("{host} {}\n", encode_public(key))
    }

    /// Number of pinned hosts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no host is pinned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_table_new_known_changed() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let text = format!("# servers\n\n{}", KnownServers::line("127.0.0.1:7878", &a));
        let mut t = KnownServers::parse(&text).unwrap();
        assert_eq!(t.check("127.0.0.1:7878", &a), Trust::Known);
        assert_eq!(t.check("127.0.0.1:7878", &b), Trust::Changed { pinned: a });
        assert_eq!(t.check("10.0.0.1:7878", &a), Trust::New);
        t.add("h:1", &b).unwrap();
        assert_eq!(t.check("h:1", &b), Trust::Known);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn damaged_file_is_an_error() {
        assert_eq!(
            KnownServers::parse("host\n"),
            Err((1, "expected `host:port key`"))
        );
        assert_eq!(
            KnownServers::parse("# c\nhost AAAA\n"),
            Err((2, "key is not 32 bytes of base64"))
        );
    }

    #[test]
    fn fingerprint_is_sha256_base64() {
        let fp = fingerprint(&[0u8; 32]);
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), 7 + 43);
    }
}
