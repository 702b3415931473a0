//! The test vectors of docs/PROTOCOL.md, appendix A, recomputed by the library itself.
//!
//! A whole session (handshake, login, a job and its result, STATS, a refused job, BYE) runs
//! between a real client and a real server connection from fixed secrets. Every frame they put
//! on the wire, every intermediate value of the handshake and the login, and the key, verifier
//! and known-servers texts are compared byte for byte with the constants below, and each
//! constant must also appear in the appendix (whitespace removed, so a value may wrap over
//! lines there): the document and the code cannot drift apart unnoticed.
//!
//! `NP_PRINT_VECTORS=1 cargo test -p libnetproto --lib protocol_vectors -- --nocapture`
//! prints the appendix's vector block from the code.

use std::sync::Arc;

use x25519_dalek::{PublicKey, StaticSecret};

use crate::conn::{ClientConfig, ClientConn, Conn, ServerConfig, ServerConn, Side, Timestamp};
use crate::handshake;
use crate::keys::{encode_public, fingerprint, KnownServers, ServerKey};
use crate::limits::{HEADER_AAD_LEN, HEADER_LEN, TAG_LEN};
use crate::login::{self, Verifier};
use crate::message::{ResultInfo, ServerParams};
use crate::opcode::ErrorCode;
use crate::session::{self, CipherState};

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

const CLIENT_EPHEMERAL: [u8; 32] = [0x01; 32];
const SERVER_EPHEMERAL: [u8; 32] = [0x02; 32];
const SERVER_STATIC: [u8; 32] = [0x09; 32];
const USER: &str = "alice";
const PASSWORD: &[u8] = b"correct horse";
const SALT: [u8; 16] = [0x07; 16];
const ITERATIONS: u32 = 4096;
const PARAMS: ServerParams = ServerParams {
    max_chunk: 65_536,
    max_upload: 1_048_576,
    max_in_flight: 4,
};
const T: Timestamp = Timestamp::ZERO;

/// The handshake and login values of the appendix: (name, hex), in order.
const EXPECTED_VALUES: &[(&str, &str)] = &[
    ("h0", "3601acf85c829c4569a604754893c48a08aec40bdfb0cf594d34d6a3413ebf60"),
    ("e_c.pub", "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209"),
    ("e_s.pub", "ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59"),
    ("s.pub", "57db4b359f23ae5e146e4e2512056704722506348c150c14753d0c933d04d421"),
    ("HELLO frame (58 bytes)", "4e50010000000022000100000000000000000000d34480780100a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209"),
    ("h1", "bea79fecf800f6ed5400192fffea87d8a32b37ba061885b3d157e2b0f665383c"),
    ("DH(e_s,e_c)", "2ed76ab549b1e73c031eb49c9448f0798aea81b698279a0c3dc3e49fbfc4b953"),
    ("ck1", "5905c6b7ccfb6f628f3430ec34ba5fbf41a211c459f5a3364f34c4e73de8ac70"),
    ("k1", "b631cc2d857386e10d3f7ba689fed214e414c532da671aaee7ecd22c166ceb5d"),
    ("DH(s,e_c)", "634375b91f57de547bb24e6475f7f89fb24cbaead41002ee0183622090ed5931"),
    ("ck2", "334d25e12cbac9a4e42763862a921fcca031b86d4625c3844de1736f1051d271"),
    ("k2", "13f3e534cea5137f78a3f638b36079c04917b1896747b5d9183a83421e9b7d04"),
    ("HELLO_REPLY frame (136 bytes)", "4e500100000000700002000000000000000000002c920957ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59096bb2f529e46b1def26c09c23f3570ccdc265cbcd29f2a3fecc9566808a53e582658b89af445b40c792a8928419571af0b92e718eb592e1a2e5a1dcc6653707d4ad4aeba9605c1f7b821da9dfe38096"),
    ("h (transcript)", "03fe926b45349bc120c7dcaba7af5a71598b543d3a9102f7a47e8333269505f4"),
    ("k_c2s", "075b700aefba0d8f8ee22579a3580cde11d0d7b78c82c0513f368aafd42139a0"),
    ("k_s2c", "3f76bac6e2c71176dab081d8e06c44bbe6304e59ef47710144e5fd9dd8c2800c"),
    ("SaltedPassword", "e492d4dc1a25f57c1f9598bd0c0f2e0763c756c30efb8ace510edc1f6cd56a3c"),
    ("AuthMessage", "6e657470726f746f2f31206c6f67696e03fe926b45349bc120c7dcaba7af5a71598b543d3a9102f7a47e8333269505f405616c696365100707070707070707070707070707070700001000"),
    ("ClientKey", "8089ae152d3a6bde5541cba6307520361ae57bbbb8270ab8407a3db290920d53"),
    ("StoredKey", "616adbbe6445b22a70633fbe8fb4903f046d0dcb0ffddc5ad8e8c9f7bff11a45"),
    ("ServerKey", "985bb120ea0f8287767723bde9360ed3d0f9a4e6accd2e5fb16901c4d835d05f"),
    ("ClientProof", "819755efd6ccfe64e47183b5423dc354e3887014a5f5365d9c45d59b81a654a2"),
    ("ServerSignature", "d10e3b9d3b47c6f0032b5bdabadbe043af5ee2f88b632e695a13a6416849da24"),
];

/// The sealed frames of the appendix: (opcode, whole frame in hex), in wire order.
const EXPECTED_FRAMES: &[(&str, &str)] = &[
    ("LOGIN_START", "4e50010100000016000300000000000000000000322fe4e2d2e5921c0248cd0238353bde50d54c372e1e368c088d"),
    ("LOGIN_CHALLENGE", "4e50010100000025000400000000000000000000826b023917f0c3bfb830710f57d366faa1616ede461ac6a947cdcaea685ffe70a7207efd64787c2d5f"),
    ("LOGIN_PROOF", "4e50010100000030000500000000000000000000de9afe0e8f6de48b0993de61b71fe9fba3b32f653c0b8a83f58029f0a74365eb976221e36af9bdb5f6e23d7c8d8fb3b2b5d7814d"),
    ("LOGIN_OK", "4e5001010000003000060000000000000000000034b2b39dcfe7749725597d204cd79dae602538a22d21921c38773317abffac3c44ddd2f120f7b2370c8ba066d07d56a1cef7552b"),
    ("JOB_SUBMIT", "4e500103000000240010000000000000000000010afdfc9fa3a7110afb58762e72c155c2e068b4fc071513450de3cef3638bc8ab46cdf98495ec48c0"),
    ("JOB_RESULT", "4e50010300000037001200000000000000000001766af12152870ea7ccaf060e97d417b5e1f256e477928a14c4d97529e5d8edd68db2683aed8e48250fe38e25369c8e1f922eed9c037a74ecd681c7"),
    ("STATS_REQUEST", "4e500101000000100022000000000000000000022a7b64bc36abdc29882c36aca7ff467127af1e7f"),
    ("STATS_REPLY", "4e500101000000220023000000000000000000023b1c96cf48e8d0320ff2ab218be7ce8885f6329da546eeaa13381de848e4469da7fed4eb84ba"),
    ("JOB_SUBMIT", "4e50010300000020001000000000000000000003f5a13f7fd9bb571a3eabebaf07f53a8689c9aa2cda47d52dc88cf924e0af165fea24dfac"),
    ("ERROR", "4e50010100000028003000000000000000000003995976725811218fba4fd4004e926924747f0846708d000ddcae115261d70d3eb4d46ed0ee6aa295ef384a3d"),
    ("BYE", "4e5001010000001000330000000000000000000094fcba069721d33339a5da1e5ea335e7e281ab33"),
];

/// Texts the document shows: the fingerprint (8.2), the key file of the fixed static key
/// (8.1), the verifier of the fixed password (7.5) and the known-servers line (8.3).
const EXPECTED_TEXTS: &[(&str, &str)] = &[
    ("fingerprint", "SHA256:BxDn3oghGeMxYQyscgwbFSiPcAbwg8EBd3vjexnyqKM"),
    ("key file", "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="),
    (
        "verifier",
        "scram-sha256$4096$BwcHBwcHBwcHBwcHBwcHBw==$YWrbvmRFsipwYz++j7SQPwRtDcsP/dxa2OjJ97/xGkU=$mFuxIOoPgod2dyO96TYO09D5pOaszS5fsWkBxNg10F8=",
    ),
    (
        "known-servers line",
        "127.0.0.1:7878 V9tLNZ8jrl4Ubk4lEgVnBHIlBjSMFQwUdT0Mkz0E1CE=",
    ),
];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Appendix A without whitespace: a value wrapped over several lines is one string here.
fn appendix() -> String {
    let start = DOC
        .find("## Appendix A")
        .expect("appendix A in PROTOCOL.md");
    let end = DOC
        .find("## Appendix B")
        .expect("appendix B in PROTOCOL.md");
    DOC[start..end].split_whitespace().collect()
}

/// The pending output of `a`, taken off it.
fn take<S: Side>(a: &mut Conn<S>) -> Vec<u8> {
    let out = a.pending_output().to_vec();
    a.consume_output(out.len(), T);
    out
}

/// Feeds `bytes` to `b` and returns its event's debug form ("" for none).
fn deliver<S: Side>(b: &mut Conn<S>, bytes: &[u8]) -> String {
    assert_eq!(b.feed(bytes, T), bytes.len());
    let ev = b.poll_event().expect("a valid frame");
    let text = ev.map(|e| format!("{e:?}")).unwrap_or_default();
    assert_eq!(
        b.poll_event().unwrap(),
        None,
        "one frame, one event at most"
    );
    text
}

/// One encrypted frame of the session, as documented: its name and direction, the counter it
/// was sealed with, its plaintext body and the whole frame.
struct Sealed {
    name: &'static str,
    /// What the body holds, in words.
    what: &'static str,
    c2s: bool,
    n: u64,
    plain: Vec<u8>,
    frame: Vec<u8>,
}

/// Everything the appendix lists, computed: named values in order, and the sealed frames.
struct Vectors {
    values: Vec<(String, Vec<u8>)>,
    sealed: Vec<Sealed>,
    texts: Vec<(&'static str, String)>,
}

impl Vectors {
    fn value(&mut self, name: &str, v: &[u8]) {
        self.values.push((name.to_string(), v.to_vec()));
    }
}

fn compute() -> Vectors {
    let mut v = Vectors {
        values: Vec::new(),
        sealed: Vec::new(),
        texts: Vec::new(),
    };
    let server_key = ServerKey::from_secret(SERVER_STATIC);
    let verifier = Verifier::create(PASSWORD, &SALT, ITERATIONS).unwrap();
    let mut scfg = ServerConfig::new(ServerKey::from_secret(SERVER_STATIC), PARAMS);
    scfg.add_user(USER, verifier.clone()).unwrap();
    let mut s = ServerConn::new(Arc::new(scfg), SERVER_EPHEMERAL, T);
    let ccfg = ClientConfig::new(USER, PASSWORD).unwrap();
    let mut c = ClientConn::new(Arc::new(ccfg), CLIENT_EPHEMERAL, T);

    // --- handshake, frame by frame, with the intermediate values of section 5.3 ---
    let e_c = StaticSecret::from(CLIENT_EPHEMERAL);
    let e_s = StaticSecret::from(SERVER_EPHEMERAL);
    let e_c_pub = PublicKey::from(&e_c).to_bytes();
    let e_s_pub = PublicKey::from(&e_s).to_bytes();
    let h0 = handshake::initial_hash();
    v.value("h0", &h0);
    v.value("e_c.pub", &e_c_pub);
    v.value("e_s.pub", &e_s_pub);
    v.value("s.pub", server_key.public());
    v.texts
        .push(("fingerprint", fingerprint(server_key.public())));

    let hello = take(&mut c);
    v.value("HELLO frame (58 bytes)", &hello);
    assert_eq!(deliver(&mut s, &hello), "");
    let h1 = handshake::hash2(&h0, &hello);
    v.value("h1", &h1);
    let mut ck = h0;
    let ee = handshake::dh(&e_s, &e_c_pub).unwrap();
    assert_eq!(*ee, *handshake::dh(&e_c, &e_s_pub).unwrap());
    v.value("DH(e_s,e_c)", ee.as_ref());
    let k1 = handshake::mix_key(&mut ck, &ee);
    v.value("ck1", &ck);
    v.value("k1", k1.as_ref());
    let es = handshake::dh(server_key.secret(), &e_c_pub).unwrap();
    assert_eq!(*es, *handshake::dh(&e_c, server_key.public()).unwrap());
    v.value("DH(s,e_c)", es.as_ref());
    let k2 = handshake::mix_key(&mut ck, &es);
    v.value("ck2", &ck);
    v.value("k2", k2.as_ref());

    let reply = take(&mut s);
    v.value("HELLO_REPLY frame (136 bytes)", &reply);
    let key = format!("ServerKey {{ key: {:?} }}", server_key.public());
    assert_eq!(deliver(&mut c, &reply), key);
    let h = handshake::hash2(&h1, &reply);
    v.value("h (transcript)", &h);
    assert_eq!(c.transcript_hash(), &h);
    assert_eq!(s.transcript_hash(), &h);
    let (k_c2s, k_s2c) = handshake::split(&ck, &h);
    v.value("k_c2s", k_c2s.as_ref());
    v.value("k_s2c", k_s2c.as_ref());

    // --- login and requests: every frame from here on is sealed ---
    let seal = |v: &mut Vectors, name, what, c2s, frame: Vec<u8>| {
        let n = v.sealed.iter().filter(|f| f.c2s == c2s).count() as u64;
        v.sealed.push(Sealed {
            name,
            what,
            c2s,
            n,
            plain: Vec::new(),
            frame,
        });
    };
    c.trust_server_key(true).unwrap();
    let f = take(&mut c);
    assert_eq!(deliver(&mut s, &f), "");
    seal(&mut v, "LOGIN_START", "user_len 5, \"alice\"", true, f);
    let f = take(&mut s);
    assert_eq!(deliver(&mut c, &f), "");
    seal(
        &mut v,
        "LOGIN_CHALLENGE",
        "salt_len 16, salt 16 × 07, iterations 4096",
        false,
        f,
    );
    let f = take(&mut c);
    assert_eq!(deliver(&mut s, &f), r#"LoggedIn { user: "alice" }"#);
    seal(&mut v, "LOGIN_PROOF", "ClientProof", true, f);
    let f = take(&mut s);
    assert!(deliver(&mut c, &f).starts_with("Ready"));
    seal(&mut v, "LOGIN_OK", "ServerSignature", false, f);

    c.send_job(1, "blur:2", 4, &[0, 1, 2, 3], true).unwrap();
    let f = take(&mut c);
    assert!(deliver(&mut s, &f).starts_with("JobSubmit { request_id: 1, total_len: 4"));
    let what = "total_len 4, spec_len 6, \"blur:2\", data 00 01 02 03";
    seal(&mut v, "JOB_SUBMIT", what, true, f);
    let info = ResultInfo {
        total_len: 3,
        width: 1,
        height: 1,
        format: 1,
        queue_us: 5,
        decode_us: 6,
        filter_us: 7,
        encode_us: 8,
    };
    s.send_result(1, &info, &[0xaa, 0xbb, 0xcc], true).unwrap();
    let f = take(&mut s);
    assert!(deliver(&mut c, &f).starts_with("JobResult { request_id: 1"));
    let what = "total_len 3, 1 × 1, format 1 (PNG), reserved, queue/decode/filter/encode 5/6/7/8 µs, data aa bb cc";
    seal(&mut v, "JOB_RESULT", what, false, f);

    c.send_stats_request(2).unwrap();
    let f = take(&mut c);
    assert_eq!(deliver(&mut s, &f), "StatsRequest { request_id: 2 }");
    seal(&mut v, "STATS_REQUEST", "empty", true, f);
    s.send_stats(2, &[("jobs_ok", 1)]).unwrap();
    let f = take(&mut s);
    assert!(deliver(&mut c, &f).starts_with("Stats { request_id: 2"));
    seal(
        &mut v,
        "STATS_REPLY",
        "count 1: name_len 7, \"jobs_ok\", value 1",
        false,
        f,
    );

    c.send_job(3, "blur:0", 0, &[], true).unwrap();
    let f = take(&mut c);
    assert!(deliver(&mut s, &f).starts_with("JobSubmit { request_id: 3"));
    let what = "total_len 0, spec_len 6, \"blur:0\", no data";
    seal(&mut v, "JOB_SUBMIT", what, true, f);
    s.reject_request(3, ErrorCode::BadSpec, "bad op spec (step 1)")
        .unwrap();
    let f = take(&mut s);
    assert_eq!(
        deliver(&mut c, &f),
        r#"Error { request_id: 3, code: 300, message: "bad op spec (step 1)" }"#
    );
    seal(
        &mut v,
        "ERROR",
        "code 300 (BAD_SPEC), text_len 20, \"bad op spec (step 1)\"",
        false,
        f,
    );

    c.send_bye().unwrap();
    let f = take(&mut c);
    assert_eq!(deliver(&mut s, &f), "Bye");
    seal(&mut v, "BYE", "empty", true, f);

    // Each sealed frame opens with the documented key at its counter: the plaintext shown is
    // what the receiver gets.
    let mut rx_c2s = CipherState::new(&k_c2s);
    let mut rx_s2c = CipherState::new(&k_s2c);
    for f in &mut v.sealed {
        let rx = if f.c2s { &mut rx_c2s } else { &mut rx_s2c };
        let mut body = f.frame[HEADER_LEN..].to_vec();
        let len = rx.open(&f.frame[..HEADER_AAD_LEN], &mut body).unwrap();
        assert_eq!(len + TAG_LEN, body.len());
        body.truncate(len);
        f.plain = body;
    }

    // --- the login computation of section 7.3 ---
    let salted = login::salted_password(PASSWORD, &SALT, ITERATIONS);
    v.value("SaltedPassword", salted.as_ref());
    let auth = login::auth_message(&h, USER, &SALT, ITERATIONS);
    v.value("AuthMessage", &auth);
    let client_key = login::hmac(salted.as_ref(), &[b"Client Key"]);
    v.value("ClientKey", &client_key);
    v.value("StoredKey", &verifier.stored_key);
    v.value("ServerKey", &verifier.server_key);
    let (proof, server_sig) = login::client_proof(&salted, &auth);
    v.value("ClientProof", &proof);
    v.value("ServerSignature", &server_sig);
    let proof_frame = &v.sealed.iter().find(|f| f.name == "LOGIN_PROOF").unwrap();
    assert_eq!(proof_frame.plain, proof);
    let ok_frame = &v.sealed.iter().find(|f| f.name == "LOGIN_OK").unwrap();
    assert_eq!(ok_frame.plain, server_sig);

    // --- the texts of sections 7.5, 8.1 and 8.3 ---
    v.texts.push(("key file", base64_text(&SERVER_STATIC)));
    v.texts.push(("verifier", verifier.encode()));
    v.texts.push((
        "known-servers line",
        KnownServers::line("127.0.0.1:7878", server_key.public())
            .trim_end()
            .to_string(),
    ));
    v
}

fn base64_text(b: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `bytes` as hex, 32 bytes a line, continuation lines indented by `indent`.
fn wrapped(bytes: &[u8], indent: usize) -> String {
    if bytes.is_empty() {
        return "(empty)".into();
    }
    let lines: Vec<String> = bytes.chunks(32).map(hex).collect();
    lines.join(&format!("\n{}", " ".repeat(indent)))
}

/// One sealed frame as the appendix prints it.
fn render_sealed(f: &Sealed) -> String {
    let dir = if f.c2s { "c2s" } else { "s2c" };
    let id = u64::from_be_bytes(f.frame[12..20].try_into().unwrap());
    let (ct, tag) = f.frame[HEADER_LEN..].split_at(f.frame.len() - HEADER_LEN - TAG_LEN);
    format!(
        "{} frame, {dir} n={}, request id {id}, flags {:02x} ({} bytes): {}\n  \
         nonce      {}\n  plaintext  {}\n  header     {}\n  ciphertext {}\n  tag        {}\n",
        f.name,
        f.n,
        f.frame[3],
        f.frame.len(),
        f.what,
        hex(&session::nonce(f.n)),
        wrapped(&f.plain, 13),
        hex(&f.frame[..HEADER_LEN]),
        wrapped(ct, 13),
        hex(tag),
    )
}

fn squeeze(s: &str) -> String {
    s.split_whitespace().collect()
}

#[test]
fn the_appendix_vectors_are_what_the_code_computes() {
    let v = compute();
    if std::env::var_os("NP_PRINT_VECTORS").is_some() {
        for (name, value) in &v.values {
            println!("    (\"{name}\", \"{}\"),", hex(value));
        }
        for f in &v.sealed {
            println!("    (\"{}\", \"{}\"),", f.name, hex(&f.frame));
        }
        for f in &v.sealed {
            println!("{}", render_sealed(f));
        }
    }
    let doc = appendix();

    // The handshake and login values: as expected, and in the appendix under their names.
    let names: Vec<&str> = v.values.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = EXPECTED_VALUES.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected);
    for ((name, value), (_, want)) in v.values.iter().zip(EXPECTED_VALUES) {
        assert_eq!(hex(value), *want, "{name}");
        let entry = squeeze(&format!("{name} {want}"));
        assert!(doc.contains(&entry), "appendix A lacks {name} = {want}");
    }

    // The sealed frames: as expected, and printed in the appendix with their nonce,
    // plaintext, header, ciphertext and tag.
    assert_eq!(v.sealed.len(), EXPECTED_FRAMES.len());
    for (f, (name, want)) in v.sealed.iter().zip(EXPECTED_FRAMES) {
        assert_eq!(
            (f.name, hex(&f.frame)),
            (*name, want.to_string()),
            "{name} n={}",
            f.n
        );
        let entry = render_sealed(f);
        assert!(
            doc.contains(&squeeze(&entry)),
            "appendix A lacks, or differs from:\n{entry}"
        );
    }

    // The texts, wherever the document shows them.
    for (name, text) in &v.texts {
        let want = EXPECTED_TEXTS.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(text, want, "{name}");
        assert!(DOC.contains(want), "PROTOCOL.md lacks the {name} {want}");
    }
    assert_eq!(v.texts.len(), EXPECTED_TEXTS.len());
}

#[test]
fn the_documented_key_file_loads_as_the_documented_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("np-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.key");
    let text = EXPECTED_TEXTS
        .iter()
        .find(|(n, _)| *n == "key file")
        .unwrap()
        .1;
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (key, created) = crate::io::load_or_create_server_key(&path).unwrap();
    assert!(!created);
    let s_pub = EXPECTED_VALUES
        .iter()
        .find(|(n, _)| *n == "s.pub")
        .unwrap()
        .1;
    assert_eq!(hex(key.public()), s_pub);
    assert_eq!(
        encode_public(key.public()),
        "V9tLNZ8jrl4Ubk4lEgVnBHIlBjSMFQwUdT0Mkz0E1CE="
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// PROBE and its three answers (appendix A, "PROBE"; section 4.15 prints the same strings
/// for HAProxy): the fixed request, and what a real server connection puts on the wire for
/// it with each status set, then closed with nothing else queued.
const PROBE_VECTORS: &[(&str, &str)] = &[
    (
        "PROBE frame (24 bytes)",
        "4e50010000000000004000000000000000000000530e5c8f",
    ),
    (
        "PROBE_REPLY ready (25 bytes)",
        "4e5001000000000100410000000000000000000019d6582401",
    ),
    (
        "PROBE_REPLY not ready (25 bytes)",
        "4e500100000000010041000000000000000000000a86abd002",
    ),
    (
        "PROBE_REPLY draining (25 bytes)",
        "4e50010000000001004100000000000000000000f8ed28d303",
    ),
];

#[test]
fn the_probe_vectors_are_what_a_server_connection_answers() {
    use crate::probe::{self, ProbeAnswer, ProbeStatus};
    let doc = appendix();
    let (name, want) = PROBE_VECTORS[0];
    assert_eq!(hex(&probe::request()), want, "{name}");
    for (i, status) in [
        ProbeStatus::Ready,
        ProbeStatus::NotReady,
        ProbeStatus::Draining,
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = Arc::new(ServerConfig::new(
            ServerKey::from_secret(SERVER_STATIC),
            PARAMS,
        ));
        let mut s = ServerConn::new(cfg, SERVER_EPHEMERAL, T);
        s.set_probe_status(status);
        let event = deliver(&mut s, &probe::request());
        assert_eq!(event, format!("{:?}", crate::Event::Probe { status }));
        assert!(s.is_closed() && s.error().is_none());
        let reply = take(&mut s);
        let (name, want) = PROBE_VECTORS[i + 1];
        assert_eq!(hex(&reply), want, "{name}");
        assert_eq!(probe::parse_reply(&reply), Ok(ProbeAnswer::Status(status)));
    }
    for (name, want) in PROBE_VECTORS {
        assert!(
            doc.contains(&squeeze(&format!("{name} {want}"))),
            "appendix A lacks {name}"
        );
    }
    // Section 4.15 gives HAProxy the same strings.
    for (_, want) in PROBE_VECTORS {
        assert!(DOC.contains(want), "PROTOCOL.md section 4.15 lacks {want}");
    }
}

#[test]
fn a_probe_is_only_valid_as_the_first_frame_and_exactly_as_specified() {
    use crate::frame;
    use crate::opcode::Opcode;
    let cfg = Arc::new(ServerConfig::new(
        ServerKey::from_secret(SERVER_STATIC),
        PARAMS,
    ));
    // With a body, or a request id: refused with a clear ERROR, no PROBE_REPLY.
    for (id, body) in [(0u64, &b"x"[..]), (5, &[][..])] {
        let mut s = ServerConn::new(cfg.clone(), SERVER_EPHEMERAL, T);
        let mut f = Vec::new();
        frame::encode(&mut f, Opcode::Probe, 0, id, body).unwrap();
        s.feed(&f, T);
        assert!(s.poll_event().is_err());
        let out = take(&mut s);
        assert_eq!(&out[8..10], &(Opcode::Error as u16).to_be_bytes());
    }
    // After a HELLO it is a client that skipped login.
    let ccfg = Arc::new(ClientConfig::new(USER, PASSWORD).unwrap());
    let mut c = ClientConn::new(ccfg, CLIENT_EPHEMERAL, T);
    let mut s = ServerConn::new(cfg, SERVER_EPHEMERAL, T);
    s.set_probe_status(crate::ProbeStatus::Ready);
    deliver(&mut s, &take(&mut c));
    s.feed(&crate::probe::request(), T);
    assert!(matches!(
        s.poll_event(),
        Err(crate::Error::UnexpectedMessage { .. })
    ));
}
