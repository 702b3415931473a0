//! Per-direction AEAD state of an established session: ChaCha20-Poly1305 with a 64-bit counter.
//!
//! Trust boundary: the nonce is implicit (never on the wire) and strictly increasing, so a
//! replayed, reordered or dropped frame fails the tag; each direction has its own key, so a
//! frame reflected back to its sender fails too. Any failure is fatal to the connection.

use crate::aead::Aead;
use crate::error::Error;
use crate::limits::TAG_LEN;

pub struct CipherState {
    aead: Aead,
    counter: u64,
}

impl std::fmt::Debug for CipherState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipherState")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

pub(crate) fn nonce(counter: u64) -> [u8; 12] {
    // Noise's layout: 32 zero bits, then the counter little-endian.
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

impl CipherState {
    pub fn new(key: &[u8; 32]) -> Self {
        CipherState {
            aead: Aead::new(key),
            counter: 0,
        }
    }


    fn next_nonce(&mut self) -> Result<[u8; 12], Error> {
        // u64::MAX itself is never used, as in Noise, so the counter cannot wrap.
        if self.counter == u64::MAX {
            return Err(Error::NonceExhausted);
        }
        let n = nonce(self.counter);
        self.counter += 1;
        Ok(n)
    }

    /// Encrypts `buf` in place and returns the tag to append.
    pub fn seal(&mut self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        let n = self.next_nonce()?;
        Ok(self.aead.seal(n, aad, buf))
    }

    /// Decrypts `buf` (ciphertext followed by the tag) in place; returns the plaintext length.
    /// A failure leaves the counter unchanged but is meant to end the session.
    pub fn open(&mut self, aad: &[u8], buf: &mut [u8]) -> Result<usize, Error> {
        if buf.len() < TAG_LEN {
            return Err(Error::DecryptFailed);
        }
        if self.counter == u64::MAX {
            return Err(Error::NonceExhausted);
        }
        let (ct, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("split at TAG_LEN from the end");
        self.aead
            .open(nonce(self.counter), aad, ct, tag)
            .map_err(|_| Error::DecryptFailed)?;
        self.counter += 1;
        Ok(ct.len())
    }

    #[cfg(test)]
    pub(crate) fn set_counter(&mut self, c: u64) {
        self.counter = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_replay_fails() {
        let key = [7u8; 32];
        let (mut tx, mut rx) = (CipherState::new(&key), CipherState::new(&key));
        let mut msgs = Vec::new();
        for i in 0..3u8 {
            let mut b = vec![i; 10];
            let tag = tx.seal(b"hdr", &mut b).unwrap();
            b.extend_from_slice(&tag);
            msgs.push(b);
        }
        let mut m0 = msgs[0].clone();
        assert_eq!(rx.open(b"hdr", &mut m0).unwrap(), 10);
        assert_eq!(&m0[..10], &[0u8; 10]);
        // replay of frame 0 and skipping ahead to frame 2 both fail
        assert_eq!(
            rx.open(b"hdr", &mut msgs[0].clone()),
            Err(Error::DecryptFailed)
        );
        assert_eq!(
            rx.open(b"hdr", &mut msgs[2].clone()),
            Err(Error::DecryptFailed)
        );
        // wrong associated data fails
        assert_eq!(
            rx.open(b"HDR", &mut msgs[1].clone()),
            Err(Error::DecryptFailed)
        );
        assert_eq!(rx.open(b"hdr", &mut msgs[1].clone()).unwrap(), 10);
    }

    #[test]
    fn counter_refuses_to_wrap() {
        let mut tx = CipherState::new(&[1u8; 32]);
        tx.set_counter(u64::MAX - 1);
        tx.seal(b"", &mut []).unwrap();
        assert_eq!(tx.seal(b"", &mut []), Err(Error::NonceExhausted));
    }
}
