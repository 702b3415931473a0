//! Test helpers: building (and deliberately breaking) encoded images in memory.
//!
//! Trust boundary: test-only; these helpers *produce* the hostile inputs the tests feed to the
//! real entry points, with correct CRCs and lengths where a decoder would otherwise reject
//! them before reaching the code under test.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};

pub fn encode_as(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

pub fn png(img: &DynamicImage) -> Vec<u8> {
    encode_as(img, ImageFormat::Png)
}

pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut c = Vec::with_capacity(data.len() + 12);
    c.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut digest = CRC.digest();
    digest.update(kind);
    digest.update(data);
    c.extend_from_slice(&digest.finalize().to_be_bytes());
    c
}

/// A structurally valid PNG whose IHDR declares `width x height` RGBA8 but whose single IDAT
/// holds only an empty zlib stream: decoding the pixels would need width*height*4 bytes.
pub fn png_with_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

/// Names of the chunks of a PNG, in order.
pub fn png_chunk_names(png: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut i = 8;
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
        names.push(String::from_utf8_lossy(&png[i + 4..i + 8]).into_owned());
        i += 12 + len;
    }
    names
}

/// Inserts `chunk` right after IHDR (which is always 25 bytes after the 8-byte signature).
pub fn png_insert_after_ihdr(png: &[u8], chunk: &[u8]) -> Vec<u8> {
    let at = 8 + 25;
    [&png[..at], chunk, &png[at..]].concat()
}

/// A big-endian TIFF structure holding one IFD with the Orientation tag.
pub fn exif_tiff_orientation(orientation: u16) -> Vec<u8> {
    let mut t = b"MM\x00\x2a".to_vec();
    t.extend_from_slice(&8u32.to_be_bytes()); // IFD0 offset
    t.extend_from_slice(&1u16.to_be_bytes()); // one entry
    t.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    t.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    t.extend_from_slice(&1u32.to_be_bytes()); // count
    t.extend_from_slice(&orientation.to_be_bytes());
    t.extend_from_slice(&[0, 0]); // value padding
    t.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    t
}

/// Inserts an APP1 Exif segment with the given orientation right after SOI.
pub fn jpeg_with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], b"\xff\xd8");
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend(exif_tiff_orientation(orientation));
    let mut seg = vec![0xff, 0xe1];
    seg.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    seg.extend(payload);
    [&jpeg[..2], &seg[..], &jpeg[2..]].concat()
}

/// Marker bytes of the JPEG segments before the scan data (SOI, APPn, DQT, SOF, ..., SOS).
pub fn jpeg_markers(jpeg: &[u8]) -> Vec<u8> {
    let mut markers = vec![jpeg[1]];
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xff {
        let marker = jpeg[i + 1];
        markers.push(marker);
        if marker == 0xda {
            break;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        i += 2 + len;
    }
    markers
}
