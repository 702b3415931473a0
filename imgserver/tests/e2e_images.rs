//! Hostile images through the real server: each gets a typed error or a correct result within
//! its deadline, the master never falls over, and a worker's memory cap is enforced.
//!
//! Trust boundary: this file plays a client uploading hostile images; the server is the real
//! binary, started through the shared test kit.

use std::time::{Duration, Instant};

use imgfilters::image::{self, codecs::gif::GifEncoder, Frame, ImageBuffer, Rgba, RgbaImage};
use netproto_sys::ErrorCode;
use testkit::*;

/// Tiny files whose headers declare billions of pixels, one per supported format.
fn huge_headers() -> Vec<(&'static str, Vec<u8>)> {
    let png = png_bomb(100_000, 100_000, 6);

    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
    gif.extend_from_slice(&[0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]);
    gif.extend_from_slice(&[2, 2, 0x4c, 0x01, 0, 0x3b]);

    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&70u32.to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&100_000i32.to_le_bytes());
    bmp.extend_from_slice(&100_000i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    bmp.extend_from_slice(&[0; 16]);

    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    let entries: [(u16, u16, u32, u32); 8] = [
        (256, 4, 1, 100_000),
        (257, 4, 1, 100_000),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 200),
        (278, 4, 1, 100_000),
        (279, 4, 1, 100_000),
    ];
    tiff.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&kind.to_le_bytes());
        tiff.extend_from_slice(&count.to_le_bytes());
        tiff.extend_from_slice(&value.to_le_bytes());
    }
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.resize(256, 0);

    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xc0, 0, 17, 8, 0xff, 0xff, 0xff, 0xff, 3];
    for id in 1..=3u8 {
        jpeg.extend_from_slice(&[id, 0x11, 0]);
    }
    jpeg.extend_from_slice(&[0xff, 0xd9]);

    // A real 1x1 lossless WebP whose VP8L header is patched to 16384 x 16384 = 268 MP.
    let mut webp = Vec::new();
    imgfilters::image::DynamicImage::new_rgba8(1, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut webp),
            image::ImageFormat::WebP,
        )
        .unwrap();
    let at = webp.windows(4).position(|w| w == b"VP8L").unwrap() + 8;
    assert_eq!(webp[at], 0x2f, "VP8L signature");
    let old = u32::from_le_bytes(webp[at + 1..at + 5].try_into().unwrap());
    let bits = (old & !0x0fff_ffff) | 0x3fff | (0x3fff << 14);
    webp[at + 1..at + 5].copy_from_slice(&bits.to_le_bytes());

    vec![
        ("png", png),
        ("gif", gif),
        ("bmp", bmp),
        ("tiff", tiff),
        ("jpeg", jpeg),
        ("webp", webp),
    ]
}

fn expect_typed_error(
    c: &mut netproto_sys::Client,
    id: u64,
    what: &str,
    input: &[u8],
    allowed: &[ErrorCode],
) -> u16 {
    let t = Instant::now();
    match run_job(c, id, "blur:2", input) {
        Outcome::Error { code, message } => {
            assert!(
                allowed.iter().any(|a| *a as u16 == code),
                "{what}: error {code} ({message})"
            );
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{what}: took {:?}",
                t.elapsed()
            );
            eprintln!(
                "{what}: {} in {:?}: {message}",
                netproto_sys::ErrorCode::from_u16(code).map_or("?", |c| c.name()),
                t.elapsed()
            );
            code
        }
        o => panic!("{what}: expected a typed error, got {o:?}"),
    }
}

#[test]
fn hostile_images_get_typed_errors_or_correct_results() {
    let srv = Server::start("images", &["--workers", "2", "--job-timeout", "10"]);
    let mut c = srv.connect();
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };

    // Huge declared dimensions in every format: refused from the header.
    for (fmt, bytes) in huge_headers() {
        let code = expect_typed_error(
            &mut c,
            next(),
            &format!("{fmt} declaring billions of pixels"),
            &bytes,
            &[ErrorCode::TooManyPixels, ErrorCode::DecodeFailed],
        );
        // The BMP, JPEG and WebP decoders reject these headers themselves before the pixel
        // check sees dimensions (their own size limits or header validation): still typed, fast.
        if ["png", "gif", "tiff"].contains(&fmt) {
            assert_eq!(
                code,
                ErrorCode::TooManyPixels as u16,
                "{fmt} must be refused by its header"
            );
        }
    }

    // A deflate bomb under the pixel limit: 7000 x 7000 RGBA of zeros is ~150 KB compressed and
    // 196 MB decoded; it is a legal image, so it must come back correct.
    let bomb = {
        let img: RgbaImage = ImageBuffer::from_pixel(7000, 7000, Rgba([0, 0, 0, 0]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    match run_job(&mut c, next(), "thumbnail:64", &bomb) {
        Outcome::Ok { info, .. } => assert_eq!((info.width, info.height), (64, 64)),
        o => panic!("deflate bomb: {o:?}"),
    }

    // A PNG with a 10 MB text chunk and an oversized ICC profile: metadata is skipped or
    // refused, never kept.
    let cat = sample("chelsea_64x64.png");
    let mut fat = cat[..33].to_vec(); // signature + IHDR
    png_chunk(&mut fat, b"tEXt", &[b'a'; 10 << 20]);
    fat.extend_from_slice(&cat[33..]);
    match run_job(&mut c, next(), "noop", &fat) {
        Outcome::Ok { bytes, .. } => assert!(
            bytes.len() < 100_000,
            "metadata must not survive: {} bytes",
            bytes.len()
        ),
        Outcome::Error { code, .. } => assert!([
            ErrorCode::DecodeFailed as u16,
            ErrorCode::TooManyPixels as u16
        ]
        .contains(&code)),
        o => panic!("{o:?}"),
    }

    // An animated GIF with 3000 frames: the first frame is used, quickly.
    let gif = {
        let mut out = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut out);
            let frames = (0..3000u32).map(|i| {
                Frame::new(ImageBuffer::from_pixel(
                    4,
                    4,
                    Rgba([(i % 256) as u8, 0, 0, 255]),
                ))
            });
            enc.encode_frames(frames).unwrap();
        }
        out
    };
    let t = Instant::now();
    match run_job(&mut c, next(), "invert", &gif) {
        Outcome::Ok { info, .. } => assert_eq!((info.width, info.height), (4, 4)),
        o => panic!("animated gif: {o:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));

    // A TIFF whose IFD chain loops back to itself.
    let mut looped = huge_headers()
        .into_iter()
        .find(|(f, _)| *f == "tiff")
        .unwrap()
        .1;
    looped[10..14].copy_from_slice(&64u32.to_le_bytes()); // width 64
    looped[22..26].copy_from_slice(&64u32.to_le_bytes()); // length 64
    let next_ifd = 8 + 2 + 8 * 12;
    looped[next_ifd..next_ifd + 4].copy_from_slice(&8u32.to_le_bytes());
    match run_job(&mut c, next(), "noop", &looped) {
        Outcome::Ok { .. } => {}
        Outcome::Error { code, .. } => assert_eq!(code, ErrorCode::DecodeFailed as u16),
        o => panic!("looping tiff: {o:?}"),
    }

    // Truncated and bit-flipped real samples.
    let photo = sample("rocket.jpg");
    let png = sample("coffee.png");
    let mut seed = 0x9e37_79b9_u32;
    for (name, original) in [("rocket.jpg", &photo), ("coffee.png", &png)] {
        for i in 0..10usize {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let mut damaged = original.to_vec();
            if i % 2 == 0 {
                damaged.truncate(original.len() * (i + 1) / 12);
            } else {
                for k in 0..8 {
                    let at = (seed as usize).wrapping_add(k * 7919) % damaged.len();
                    damaged[at] ^= 1 << (k % 8);
                }
            }
            match run_job(&mut c, next(), "blur:1", &damaged) {
                Outcome::Ok { .. } => {}
                Outcome::Error { code, .. } => assert!(
                    [
                        ErrorCode::DecodeFailed as u16,
                        ErrorCode::UnsupportedFormat as u16
                    ]
                    .contains(&code),
                    "{name} variant {i}: error {code}"
                ),
                o => panic!("{name} variant {i}: {o:?}"),
            }
        }
    }

    // The server is still fine, with no worker lost and nothing leaked.
    let small = sample("chelsea_64x64.png");
    assert!(matches!(
        run_job(&mut c, next(), "grayscale", &small),
        Outcome::Ok { .. }
    ));
    assert_eq!(
        srv.stat("worker_deaths"),
        0,
        "no hostile image crashed a worker"
    );
    assert_eq!(srv.stat("slots_in_use"), 0);
}

#[test]
fn a_worker_memory_cap_is_enforced() {
    // 64 MiB on top of the shared mappings: decoding a 196 MB image cannot fit.
    let srv = Server::start("memcap", &["--workers", "1", "--worker-mem-mb", "64"]);
    let mut c = srv.connect();
    let bomb = {
        let img: RgbaImage = ImageBuffer::from_pixel(7000, 7000, Rgba([9, 9, 9, 255]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    match run_job(&mut c, 1, "invert", &bomb) {
        // The allocation fails inside the capped worker: it dies (retried once, then the input
        // is poison) or the decoder reports the failure itself.
        Outcome::Error { code, message } => {
            eprintln!("196 MB decode under a 64 MiB cap: error {code}: {message}");
            assert!(
                [
                    ErrorCode::PoisonInput as u16,
                    ErrorCode::DecodeFailed as u16,
                    ErrorCode::TooManyPixels as u16
                ]
                .contains(&code),
                "error {code}: {message}"
            )
        }
        o => panic!("a 196 MB decode succeeded under a 64 MiB cap: {o:?}"),
    }
    // The same server still serves normal images.
    srv.wait_workers_ready(Duration::from_secs(3));
    let small = sample("chelsea_64x64.png");
    assert!(matches!(
        run_job(&mut c, 2, "invert", &small),
        Outcome::Ok { .. }
    ));
}

#[test]
fn a_damaged_jpeg_the_decoder_recovers_is_served_and_its_warning_logged() {
    let srv = Server::start("damaged", &["--workers", "1"]);
    let mut c = srv.connect();
    let clean = sample("rocket.jpg");
    // Truncated at 70%: libjpeg-turbo decodes what is there and warns.
    let cut = &clean[..clean.len() * 7 / 10];
    match run_job(&mut c, 1, "noop,format:png", cut) {
        Outcome::Ok { bytes, .. } => {
            let (want, got) = (
                image::load_from_memory(&clean).unwrap(),
                image::load_from_memory(&bytes).unwrap(),
            );
            assert_eq!((got.width(), got.height()), (want.width(), want.height()));
        }
        o => panic!("a recoverable JPEG failed: {o:?}"),
    }
    srv.wait(
        "the job line with the decoder's warning",
        Duration::from_secs(10),
        || {
            srv.log_text()
                .lines()
                .any(|l| l.contains("job ") && l.contains("decode warning: "))
        },
    );
    // A clean image's line has none.
    assert!(matches!(
        run_job(&mut c, 2, "noop,format:png", &clean),
        Outcome::Ok { .. }
    ));
    srv.wait("the clean job's line", Duration::from_secs(10), || {
        srv.log_text().lines().any(|l| l.contains("req 2:"))
    });
    let line = srv
        .log_text()
        .lines()
        .find(|l| l.contains("req 2:"))
        .unwrap()
        .to_owned();
    assert!(!line.contains("decode warning"), "{line}");
}
