//! Cache keys: BLAKE3 over a format tag, the input bytes, the normalised op spec and every
//! server setting that changes a result's bytes.
//!
//! Trust boundary: the input is the client's; the hash is a collision-resistant function of
//! it, so one client cannot make its entry answer another's different request.

/// A 32-byte BLAKE3 digest.
pub type Key = [u8; 32];

/// Bumped whenever what goes into a key changes (so old keys can never meet new ones).
const INPUT_TAG: &[u8] = b"imgserver result cache v1: input\0";
const KEY_TAG: &[u8] = b"imgserver result cache v1: key\0";

/// Hashes an upload as its chunks are stored (no second pass over the bytes, no pause at the
/// end of a large upload).
pub struct InputHasher(blake3::Hasher);

impl Default for InputHasher {
    fn default() -> Self {
        let mut h = blake3::Hasher::new();
        h.update(INPUT_TAG);
        InputHasher(h)
    }
}

impl InputHasher {
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    /// The input's own hash (what the poison set remembers: an input that killed two workers
    /// is refused whatever the spec).
    pub fn finish(&self) -> Key {
        *self.0.finalize().as_bytes()
    }
}

/// The result's key: the input's hash, the canonical spec text (`Pipeline::canonical`) and
/// the server's output-relevant settings (`settings`: the build's version, decode limits),
/// each length-prefixed so no two different triples give the same bytes.
pub fn result_key(input: &Key, canonical_spec: &str, settings: &str) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(KEY_TAG);
    h.update(input);
    for part in [canonical_spec, settings] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(input: &[&[u8]], spec: &str, settings: &str) -> Key {
        let mut h = InputHasher::default();
        for c in input {
            h.update(c);
        }
        let canonical = spec.parse::<imgfilters::Pipeline>().unwrap().canonical();
        result_key(&h.finish(), &canonical, settings)
    }

    #[test]
    fn equivalent_specs_and_chunkings_give_one_key_and_anything_else_another() {
        let k = key(&[b"abcdef"], "blur:2", "v1");
        assert_eq!(k, key(&[b"abc", b"def"], "blur:2.0", "v1"));
        assert_eq!(k, key(&[b"ab", b"", b"cdef"], " blur:2 ", "v1"));
        assert_ne!(k, key(&[b"abcdeg"], "blur:2", "v1"));
        assert_ne!(k, key(&[b"abcdef"], "blur:3", "v1"));
        assert_ne!(k, key(&[b"abcdef"], "blur:2,format:png", "v1"));
        assert_ne!(k, key(&[b"abcdef"], "blur:2", "v2"));
        // The length prefixes keep the parts apart.
        let h = InputHasher::default().finish();
        assert_ne!(result_key(&h, "ab", "c"), result_key(&h, "a", "bc"));
    }
}
