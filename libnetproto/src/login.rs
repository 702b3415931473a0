//! Password login in the style of SCRAM-SHA-256 (RFC 5802/7677), bound to the handshake.
//!
//! Trust boundary: proves to the server that the client knows the password, and to the client
//! that the server holds the user's verifier, while the password never crosses the wire (not
//! even encrypted) and the server never stores it. The proof covers the handshake transcript
//! hash, so it is useless on any other connection. Unknown users get a deterministic fake salt
//! and fail exactly like a wrong password, so user names cannot be probed.
//!
//! ```text
//! SaltedPassword  = PBKDF2-HMAC-SHA256(password, salt, iterations)
//! ClientKey       = HMAC(SaltedPassword, "Client Key");  StoredKey = SHA256(ClientKey)
//! ServerKey       = HMAC(SaltedPassword, "Server Key")
//! AuthMessage     = "netproto/1 login" || transcript || u8 len || user || u8 len || salt || u32 iterations
//! ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
//! ServerSignature = HMAC(ServerKey, AuthMessage)
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::limits::{MAX_PBKDF2_ITERATIONS, MIN_PBKDF2_ITERATIONS};
use crate::message::Challenge;

type HmacSha256 = Hmac<Sha256>;

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// What the server stores per user: never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// SCRAM StoredKey: H(ClientKey).
    pub stored_key: [u8; 32],
    /// SCRAM ServerKey.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

const VERIFIER_TAG: &str = "scram-sha256";

impl Verifier {
    /// Derives a verifier from a password with a caller-chosen random salt (16..=64 bytes).
    pub fn create(password: &[u8], salt: &[u8], iterations: u32) -> Result<Self, Error> {
        if !(16..=64).contains(&salt.len()) {
            return Err(Error::InvalidArgument("salt must be 16..=64 bytes"));
        }
        if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
            return Err(Error::InvalidArgument("iterations out of range"));
        }
        if password.is_empty() {
            return Err(Error::InvalidArgument("empty password"));
        }
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(salted.as_ref(), &[b"Client Key"]);
        Ok(Verifier {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(salted.as_ref(), &[b"Server Key"]),
        })
    }

    /// `scram-sha256$iterations$salt$stored_key$server_key` (base64 fields).
    pub fn encode(&self) -> String {
        format!(
            "{VERIFIER_TAG}${}${}${}${}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    /// Parses the stored text form (`scram-sha256$...`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = Error::InvalidArgument("not a scram-sha256 verifier");
        let parts: Vec<&str> = text.trim().split('$').collect();
        let [tag, iters, salt, stored, server] = parts[..] else {
            return Err(bad);
        };
        if tag != VERIFIER_TAG {
            return Err(bad);
        }
        let iterations: u32 = iters.parse().map_err(|_| bad.clone())?;
        let salt = STANDARD.decode(salt).map_err(|_| bad.clone())?;
        let key = |s: &str| -> Result<[u8; 32], Error> {
            STANDARD
                .decode(s)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(bad.clone())
        };
        let v = Verifier {
            salt,
            iterations,
            stored_key: key(stored)?,
            server_key: key(server)?,
        };
        if !(16..=64).contains(&v.salt.len())
            || !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&v.iterations)
        {
            return Err(bad);
        }
        Ok(v)
    }

    /// The LOGIN_CHALLENGE a server sends for this verifier.
    pub fn challenge(&self) -> Challenge {
        Challenge {
            salt: self.salt.clone(),
            iterations: self.iterations,
        }
    }
}

pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out.as_mut());
    out
}

pub fn auth_message(transcript: &[u8; 32], user: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut m = b"netproto/1 login".to_vec();
    m.extend_from_slice(transcript);
    m.push(user.len() as u8);
    m.extend_from_slice(user.as_bytes());
    m.push(salt.len() as u8);
    m.extend_from_slice(salt);
    m.extend_from_slice(&iterations.to_be_bytes());
    m
}

/// Client: the proof to send and the server signature to expect.
pub fn client_proof(salted: &[u8; 32], auth: &[u8]) -> ([u8; 32], [u8; 32]) {
    let client_key = Zeroizing::new(hmac(salted, &[b"Client Key"]));
    let stored_key: [u8; 32] = Sha256::digest(client_key.as_ref()).into();
    let signature = hmac(&stored_key, &[auth]);
    let mut proof = [0u8; 32];
    for i in 0..32 {
        proof[i] = client_key[i] ^ signature[i];
    }
    let server_key = Zeroizing::new(hmac(salted, &[b"Server Key"]));
    (proof, hmac(server_key.as_ref(), &[auth]))
}

/// Server: checks a proof against a verifier; on success returns the server signature.
pub fn verify_proof(v: &Verifier, auth: &[u8], proof: &[u8; 32]) -> Result<[u8; 32], Error> {
    let signature = hmac(&v.stored_key, &[auth]);
    let mut client_key = Zeroizing::new([0u8; 32]);
    for i in 0..32 {
        client_key[i] = proof[i] ^ signature[i];
    }
    let stored: [u8; 32] = Sha256::digest(client_key.as_ref()).into();
    if bool::from(stored.ct_eq(&v.stored_key)) {
        Ok(hmac(&v.server_key, &[auth]))
    } else {
        Err(Error::AuthFailed)
    }
}

/// The verifier presented for a user that does not exist: same salt every time for the same
/// name (so repeated probes look like a real account), keys no password can match.
/// `like` gives the salt length and iteration count to imitate (those of the server's real
/// users), so a fake challenge cannot be told apart by its shape.
pub fn fake_verifier(secret: &[u8; 32], user: &str, like: (usize, u32)) -> Verifier {
    let salt = hmac(secret, &[b"fake salt", user.as_bytes()]);
    Verifier {
        salt: salt[..like.0.clamp(16, 32)].to_vec(),
        iterations: like.1,
        stored_key: hmac(secret, &[b"fake stored", user.as_bytes()]),
        server_key: hmac(secret, &[b"fake server", user.as_bytes()]),
    }
}

/// Client check of a challenge before spending CPU on it.
pub fn check_challenge(c: &Challenge) -> Result<(), Error> {
    if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&c.iterations) {
        return Err(Error::Malformed("challenge iteration count out of range"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DEFAULT_PBKDF2_ITERATIONS;

    #[test]
    fn right_password_verifies_wrong_does_not() {
        let v = Verifier::create(b"hunter2", &[9u8; 16], 4096).unwrap();
        let auth = auth_message(&[1u8; 32], "alice", &v.salt, v.iterations);
        let salted = salted_password(b"hunter2", &v.salt, v.iterations);
        let (proof, expect_sig) = client_proof(&salted, &auth);
        assert_eq!(verify_proof(&v, &auth, &proof).unwrap(), expect_sig);

        let wrong = salted_password(b"hunter3", &v.salt, v.iterations);
        let (bad, _) = client_proof(&wrong, &auth);
        assert_eq!(verify_proof(&v, &auth, &bad), Err(Error::AuthFailed));

        // Same proof on another connection (other transcript) fails.
        let other = auth_message(&[2u8; 32], "alice", &v.salt, v.iterations);
        assert_eq!(verify_proof(&v, &other, &proof), Err(Error::AuthFailed));
    }

    #[test]
    fn verifier_text_round_trip_and_rejects_junk() {
        let v = Verifier::create(b"pw", &[3u8; 20], 5000).unwrap();
        assert_eq!(Verifier::parse(&v.encode()).unwrap(), v);
        assert!(!v.encode().contains("pw$"));
        let too_few = Verifier {
            iterations: 10,
            ..v.clone()
        }
        .encode();
        for junk in [
            &too_few[..],
            "",
            "scram-sha256$1$a$b",
            "md5$1$AAAA$AAAA$AAAA",
            "scram-sha256$x$a$b$c",
        ] {
            assert!(Verifier::parse(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn fake_verifier_is_deterministic_per_user() {
        let s = [5u8; 32];
        let like = (16, DEFAULT_PBKDF2_ITERATIONS);
        assert_eq!(
            fake_verifier(&s, "bob", like),
            fake_verifier(&s, "bob", like)
        );
        // It imitates the shape of real verifiers.
        let f = fake_verifier(&s, "bob", (20, 5000));
        assert_eq!((f.salt.len(), f.iterations), (20, 5000));
        assert_ne!(
            fake_verifier(&s, "bob", like).salt,
            fake_verifier(&s, "eve", like).salt
        );
    }
}
