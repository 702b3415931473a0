//! The key exchange, in the shape of Noise NX: `-> e` / `<- e, ee, s, es`.
//!
//! Trust boundary: runs on unauthenticated bytes. The client learns the server's static key
//! (encrypted, so a passive observer cannot fingerprint the server) and both sides end with
//! one key per direction and a transcript hash over every handshake byte, which the login
//! binds to. Pure functions over byte slices; the caller supplies ephemeral secrets.
//!
//! ```text
//! h  = SHA256("netproto/1 NX 25519 ChaChaPoly SHA256");  ck = h
//! h  = SHA256(h || HELLO frame)                              client → server: e_c
//! ck, k1 = HKDF(ck, DH(e_s, e_c))
//! enc_s  = AEAD(k1, n=0, ad = h || e_s,          s)
//! ck, k2 = HKDF(ck, DH(s, e_c))
//! enc_p  = AEAD(k2, n=0, ad = h || e_s || enc_s, params)
//! h  = SHA256(h || HELLO_REPLY frame)                        server → client: e_s, enc_s, enc_p
//! k_c2s || k_s2c = HKDF-Expand(HKDF-Extract(ck, ""), "netproto/1 split" || h)
//! ```

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::aead::Aead;
use crate::error::Error;
use crate::frame::{self, Frame, VERSION};
use crate::keys::ServerKey;
use crate::limits::TAG_LEN;
use crate::message::{Hello, ServerParams};
use crate::opcode::Opcode;

const PROTOCOL_NAME: &[u8] = b"netproto/1 NX 25519 ChaChaPoly SHA256";
const SPLIT_LABEL: &[u8] = b"netproto/1 split";

/// Length of the HELLO_REPLY body: e_s, enc_s, enc_params.
pub const REPLY_LEN: usize = 32 + (32 + TAG_LEN) + (ServerParams::LEN + TAG_LEN);

/// What a completed handshake hands to the session.
pub struct Established {
    pub send_key: Zeroizing<[u8; 32]>,
    pub recv_key: Zeroizing<[u8; 32]>,
    /// Hash of every handshake byte; the login proof is bound to it.
    pub transcript: [u8; 32],
    /// The server's static public key (as learnt by the client, or the server's own).
    pub server_static: [u8; 32],
    pub params: ServerParams,
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

pub(crate) fn hash2(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

pub(crate) fn initial_hash() -> [u8; 32] {
    Sha256::digest(PROTOCOL_NAME).into()
}

/// Noise's MixKey: new chaining key and a cipher key from the DH output.
pub(crate) fn mix_key(ck: &mut [u8; 32], dh: &Zeroizing<[u8; 32]>) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 64]);
    Hkdf::<Sha256>::new(Some(ck), dh.as_ref())
        .expand(&[], okm.as_mut())
        .expect("64 bytes is a valid HKDF-SHA256 output length");
    ck.copy_from_slice(&okm[..32]);
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&okm[32..]);
    k
}

pub(crate) fn split(ck: &[u8; 32], h: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let mut okm = Zeroizing::new([0u8; 64]);
    let mut info = SPLIT_LABEL.to_vec();
    info.extend_from_slice(h);
    Hkdf::<Sha256>::new(Some(ck), &[])
        .expand(&info, okm.as_mut())
        .expect("64 bytes is a valid HKDF-SHA256 output length");
    let mut c2s = Zeroizing::new([0u8; 32]);
    let mut s2c = Zeroizing::new([0u8; 32]);
    c2s.copy_from_slice(&okm[..32]);
    s2c.copy_from_slice(&okm[32..]);
    (c2s, s2c)
}

pub(crate) fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Error> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    // A low-order peer key gives an all-zero secret an attacker can predict.
    if !shared.was_contributory() {
        return Err(Error::HandshakeFailed("peer key is of low order"));
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

// Each handshake key seals exactly one message, so the nonce is always zero.
fn aead_seal(key: &[u8; 32], ad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut out = plain.to_vec();
    let tag = Aead::new(key).seal([0u8; 12], ad, &mut out);
    out.extend_from_slice(&tag);
    out
}

fn aead_open(key: &[u8; 32], ad: &[u8], ct: &[u8]) -> Result<Vec<u8>, Error> {
    let failed = Error::HandshakeFailed("server reply does not decrypt: wrong key or tampered");
    let split = ct.len().checked_sub(TAG_LEN).ok_or(failed.clone())?;
    let (body, tag) = ct.split_at(split);
    let mut out = body.to_vec();
    let tag: &[u8; TAG_LEN] = tag.try_into().expect("split at TAG_LEN from the end");
    Aead::new(key)
        .open([0u8; 12], ad, &mut out, tag)
        .map_err(|_| failed)?;
    Ok(out)
}

/// Client side, between sending HELLO and receiving HELLO_REPLY.
pub struct ClientHandshake {
    e: StaticSecret,
    h: [u8; 32],
}

impl ClientHandshake {
    /// Starts a handshake with the given ephemeral secret (fresh random bytes in production)
    /// and appends the HELLO frame to `out`.
    pub fn start(mut ephemeral: [u8; 32], out: &mut Vec<u8>) -> Self {
        let e = StaticSecret::from(ephemeral);
        ephemeral.zeroize();
        let e_pub = PublicKey::from(&e).to_bytes();
        let at = out.len();
        let mut body = Vec::with_capacity(Hello::LEN);
        Hello {
            version: VERSION,
            ephemeral: e_pub,
        }
        .encode(&mut body);
        frame::encode(out, Opcode::Hello, 0, 0, &body).expect("HELLO fits a frame");
        let h = hash2(&initial_hash(), &out[at..]);
        ClientHandshake { e, h }
    }

    /// Processes HELLO_REPLY (`frame` is the decoded frame, `raw` its bytes on the wire).
    pub fn finish(self, frame: &Frame<'_>, raw: &[u8]) -> Result<Established, Error> {
        if frame.header.opcode != Opcode::HelloReply || frame.header.flags != 0 {
            return Err(Error::HandshakeFailed("expected a clear HELLO_REPLY"));
        }
        let body = frame.body;
        if body.len() != REPLY_LEN {
            return Err(Error::Malformed("HELLO_REPLY length"));
        }
        let mut e_s = [0u8; 32];
        e_s.copy_from_slice(&body[..32]);
        let enc_s = &body[32..32 + 32 + TAG_LEN];
        let enc_p = &body[32 + 32 + TAG_LEN..];

        let mut ck = initial_hash();
        let k1 = mix_key(&mut ck, &dh(&self.e, &e_s)?);
        let ad1 = [&self.h[..], &e_s[..]].concat();
        let s_plain = aead_open(&k1, &ad1, enc_s)?;
        let mut s = [0u8; 32];
        s.copy_from_slice(&s_plain);
        let k2 = mix_key(&mut ck, &dh(&self.e, &s)?);
        let ad2 = [&ad1[..], enc_s].concat();
        let params = ServerParams::parse(&aead_open(&k2, &ad2, enc_p)?)?;
        let h = hash2(&self.h, raw);
        let (c2s, s2c) = split(&ck, &h);
        ck.zeroize();
        Ok(Established {
            send_key: c2s,
            recv_key: s2c,
            transcript: h,
            server_static: s,
            params,
        })
    }
}

/// Server side: answers a HELLO in one step, appending HELLO_REPLY to `out`.
pub fn server_respond(
    key: &ServerKey,
    mut ephemeral: [u8; 32],
    params: ServerParams,
    hello: &Frame<'_>,
    raw: &[u8],
    out: &mut Vec<u8>,
) -> Result<Established, Error> {
    if hello.header.opcode != Opcode::Hello || hello.header.flags != 0 {
        return Err(Error::HandshakeFailed("expected a clear HELLO"));
    }
    let msg = Hello::parse(hello.body)?;
    if msg.version != VERSION {
        return Err(Error::BadVersion(msg.version));
    }
    let h = hash2(&initial_hash(), raw);
    let e = StaticSecret::from(ephemeral);
    ephemeral.zeroize();
    let e_pub = PublicKey::from(&e).to_bytes();

    let mut ck = initial_hash();
    let k1 = mix_key(&mut ck, &dh(&e, &msg.ephemeral)?);
    let ad1 = [&h[..], &e_pub[..]].concat();
    let enc_s = aead_seal(&k1, &ad1, key.public());
    let k2 = mix_key(&mut ck, &dh(key.secret(), &msg.ephemeral)?);
    let ad2 = [&ad1[..], &enc_s[..]].concat();
    let mut p = Vec::with_capacity(ServerParams::LEN);
    params.encode(&mut p);
    let enc_p = aead_seal(&k2, &ad2, &p);

    let mut body = Vec::with_capacity(REPLY_LEN);
    body.extend_from_slice(&e_pub);
    body.extend_from_slice(&enc_s);
    body.extend_from_slice(&enc_p);
    let at = out.len();
    frame::encode(out, Opcode::HelloReply, 0, 0, &body)?;
    let h = hash2(&h, &out[at..]);
    let (c2s, s2c) = split(&ck, &h);
    ck.zeroize();
    Ok(Established {
        send_key: s2c,
        recv_key: c2s,
        transcript: h,
        server_static: *key.public(),
        params,
    })
}
