//! Frame codec: byte vectors for every opcode, split delivery at every boundary, many frames
//! per read, and every way a header can be wrong.

use netproto::frame::{self, Decoded, MAGIC};
use netproto::limits::{HEADER_LEN, MAX_BODY_LEN};
use netproto::opcode::flags;
use netproto::{Error, Opcode};

fn enc(op: Opcode, fl: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&mut out, op, fl, id, body).unwrap();
    out
}

#[test]
fn ping_frame_exact_bytes() {
    // A hand-assembled PING: the layout documented in docs/PROTOCOL.md.
    let bytes = enc(Opcode::Ping, 0, 0x0102030405060708, b"hi");
    let mut expect = vec![
        b'N', b'P', 1, 0, 0, 0, 0, 2, 0x00, 0x20, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&expect), b"hi");
    expect.extend_from_slice(&crc.to_be_bytes());
    expect.extend_from_slice(b"hi");
    assert_eq!(bytes, expect);
}

#[test]
fn every_opcode_round_trips_with_its_number() {
    for op in Opcode::ALL {
        let fl = if op.is_chunked() { flags::LAST } else { 0 };
        let body: Vec<u8> = (0..(op as u16 as usize % 7)).map(|i| i as u8).collect();
        let bytes = enc(op, fl, 42, &body);
        assert_eq!(&bytes[8..10], &(op as u16).to_be_bytes(), "{op:?}");
        match frame::decode(&bytes, MAX_BODY_LEN).unwrap() {
            Decoded::Frame(f) => {
                assert_eq!(f.header.opcode, op);
                assert_eq!(f.header.flags, fl);
                assert_eq!(f.header.request_id, 42);
                assert_eq!(f.body, &body[..]);
                assert_eq!(f.used, bytes.len());
            }
            d => panic!("{op:?}: {d:?}"),
        }
    }
}

#[test]
fn split_delivery_at_every_byte_boundary() {
    let mut stream = Vec::new();
    let bodies: Vec<Vec<u8>> = vec![vec![], vec![1; 1], vec![2; 300], vec![3; 5000]];
    for (i, b) in bodies.iter().enumerate() {
        stream.extend(enc(Opcode::JobData, flags::LAST, i as u64, b));
    }
    // Feed the stream in two pieces split at every position; a receiver that buffers and
    // decodes repeatedly must see exactly the same frames.
    for split in 0..=stream.len() {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for piece in [&stream[..split], &stream[split..]] {
            buf.extend_from_slice(piece);
            loop {
                match frame::decode(&buf, MAX_BODY_LEN).unwrap() {
                    Decoded::NeedMore(n) => {
                        assert!(n > 0);
                        break;
                    }
                    Decoded::Frame(f) => {
                        got.push((f.header.request_id, f.body.to_vec()));
                        let used = f.used;
                        buf.drain(..used);
                    }
                }
            }
        }
        assert!(buf.is_empty(), "split {split}");
        let want: Vec<(u64, Vec<u8>)> = bodies
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, b)| (i as u64, b))
            .collect();
        assert_eq!(got, want, "split {split}");
    }
}

#[test]
fn byte_at_a_time_need_more_counts_down() {
    let bytes = enc(Opcode::Ping, 0, 1, b"abcdef");
    for n in 0..bytes.len() {
        match frame::decode(&bytes[..n], MAX_BODY_LEN).unwrap() {
            Decoded::NeedMore(k) => assert_eq!(
                k,
                if n < HEADER_LEN {
                    HEADER_LEN - n
                } else {
                    bytes.len() - n
                }
            ),
            d => panic!("complete at {n}: {d:?}"),
        }
    }
}

#[test]
fn many_frames_in_one_read() {
    let mut stream = Vec::new();
    for i in 0..1000u64 {
        stream.extend(enc(Opcode::Ping, 0, i, &i.to_be_bytes()));
    }
    let mut off = 0;
    let mut n = 0u64;
    while off < stream.len() {
        let Decoded::Frame(f) = frame::decode(&stream[off..], MAX_BODY_LEN).unwrap() else {
            panic!()
        };
        assert_eq!(f.header.request_id, n);
        off += f.used;
        n += 1;
    }
    assert_eq!(n, 1000);
}

fn header(len: u32, op: u16, fl: u8) -> Vec<u8> {
    let mut h = vec![b'N', b'P', 1, fl];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&op.to_be_bytes());
    h.extend_from_slice(&[0; 14]);
    h
}

#[test]
fn oversize_length_rejected_from_the_first_eight_bytes() {
    // 4 GiB declared: rejected with only 8 bytes seen, so nothing is ever allocated for it.
    let h = header(u32::MAX, Opcode::JobData as u16, 0);
    assert_eq!(
        frame::decode(&h[..8], MAX_BODY_LEN),
        Err(Error::FrameTooLarge {
            len: u32::MAX as u64,
            max: MAX_BODY_LEN as u64
        })
    );
    let h = header(MAX_BODY_LEN as u32 + 1, Opcode::JobData as u16, 0);
    assert!(matches!(
        frame::decode(&h, MAX_BODY_LEN),
        Err(Error::FrameTooLarge { .. })
    ));
    // The exact limit is fine (needs more bytes).
    let h = header(MAX_BODY_LEN as u32, Opcode::JobData as u16, 0);
    assert!(matches!(
        frame::decode(&h, MAX_BODY_LEN),
        Ok(Decoded::NeedMore(_))
    ));
    // A lower per-state limit applies too.
    let h = header(100, Opcode::Hello as u16, 0);
    assert!(matches!(
        frame::decode(&h, 64),
        Err(Error::FrameTooLarge { len: 100, max: 64 })
    ));
}

#[test]
fn header_errors_are_typed() {
    assert_eq!(
        frame::decode(b"GET / HTTP/1.1\r\n", MAX_BODY_LEN),
        Err(Error::BadMagic)
    );
    assert_eq!(
        frame::decode(&[b'N', b'P', 2], MAX_BODY_LEN),
        Err(Error::BadVersion(2))
    );
    assert_eq!(
        frame::decode(&[b'N', b'P', 1, 0x80], MAX_BODY_LEN),
        Err(Error::BadFlags(0x80))
    );
    assert_eq!(
        frame::decode(&header(0, 0x7777, 0), MAX_BODY_LEN),
        Err(Error::UnknownOpcode(0x7777))
    );
    let mut h = header(0, Opcode::Ping as u16, 0);
    h[11] = 1;
    assert_eq!(frame::decode(&h, MAX_BODY_LEN), Err(Error::BadReserved));
    // LAST on a non-chunked opcode.
    assert_eq!(
        frame::decode(&header(0, Opcode::Ping as u16, flags::LAST), MAX_BODY_LEN),
        Err(Error::BadFlags(flags::LAST))
    );
    // Empty and partial magic just wait.
    assert_eq!(
        frame::decode(&[], MAX_BODY_LEN),
        Ok(Decoded::NeedMore(HEADER_LEN))
    );
    assert_eq!(
        frame::decode(&MAGIC[..1], MAX_BODY_LEN),
        Ok(Decoded::NeedMore(HEADER_LEN - 1))
    );
}

#[test]
fn truncated_header_needs_more_and_bad_crc_is_fatal() {
    let bytes = enc(Opcode::Pong, 0, 9, b"payload");
    assert!(matches!(
        frame::decode(&bytes[..HEADER_LEN - 1], MAX_BODY_LEN),
        Ok(Decoded::NeedMore(1))
    ));
    for i in 0..bytes.len() {
        // Flip one bit anywhere: a header field check or the CRC catches it.
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(
            frame::decode(&b, MAX_BODY_LEN).is_err()
                || matches!(frame::decode(&b, MAX_BODY_LEN), Ok(Decoded::NeedMore(_))),
            "byte {i}"
        );
        if i >= 12 {
            assert!(
                matches!(frame::decode(&b, MAX_BODY_LEN), Err(Error::BadCrc { .. })),
                "byte {i}"
            );
        }
    }
}

#[test]
fn trailing_garbage_after_a_frame_is_rejected_on_the_next_decode() {
    let mut bytes = enc(Opcode::Bye, 0, 0, b"");
    bytes.extend_from_slice(b"\x00garbage");
    let Decoded::Frame(f) = frame::decode(&bytes, MAX_BODY_LEN).unwrap() else {
        panic!()
    };
    assert_eq!(
        frame::decode(&bytes[f.used..], MAX_BODY_LEN),
        Err(Error::BadMagic)
    );
}

#[test]
fn encoder_refuses_oversize_bodies_and_bad_flags() {
    let mut out = Vec::new();
    assert!(frame::encode(&mut out, Opcode::JobData, 0, 1, &vec![0; MAX_BODY_LEN + 1]).is_err());
    assert!(out.is_empty(), "a failed encode leaves nothing behind");
    assert!(frame::encode(&mut out, Opcode::Ping, flags::LAST, 1, b"").is_err());
    assert!(frame::encode(&mut out, Opcode::Ping, 0x40, 1, b"").is_err());
}
