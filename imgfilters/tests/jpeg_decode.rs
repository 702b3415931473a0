//! JPEG decoding with libjpeg-turbo against the `image` crate's decoder (zune-jpeg), which
//! decoded JPEG before: fidelity on clean photos, recovery from damage, colour spaces and
//! codings zune-jpeg lacks, and shrink-on-load against full decode + resize.
//!
//! Trust boundary: the damaged inputs stand in for hostile uploads; everything else is the
//! checked-in sample photos (samples/, the shared corpus when present) and JPEGs made from them
//! in memory. Two IDCTs differ by rounding (±1-2 per sample), so clean decodes are compared by
//! PSNR (>= 40 dB), shrink-on-load by PSNR >= 35 dB, and damage by the intact part's PSNR plus
//! the row variance of what was recovered (a flat grey or striped result has none).
#![cfg(feature = "turbojpeg")]

use imgfilters::image::{self, DynamicImage, GenericImageView, ImageFormat};
use imgfilters::{run, run_with, FilterError, Limits, Pipeline, RunOptions};

fn dirs() -> Vec<String> {
    let mut d = vec![format!("{}/../samples", env!("CARGO_MANIFEST_DIR"))];
    // The shared corpus of real-world inputs, when this checkout has one beside it.
    let corpus = format!("{}/../../../shared/corpus", env!("CARGO_MANIFEST_DIR"));
    if std::path::Path::new(&corpus).is_dir() {
        d.push(corpus);
    }
    d
}

/// Every JPEG file of the sample directories: (path, bytes).
fn sample_jpegs() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in dirs() {
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "jpeg"))
            .collect();
        paths.sort();
        for p in paths {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    assert!(out.len() >= 4, "no sample JPEGs found");
    out
}

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{}/../samples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn spec(s: &str) -> Pipeline {
    s.parse().unwrap()
}

/// Decodes through the crate (libjpeg-turbo), losslessly re-encoded as PNG and read back.
fn ours(jpeg: &[u8]) -> DynamicImage {
    let out = run(jpeg, &spec("noop,format:png"), &Limits::default()).unwrap();
    image::load_from_memory(&out.bytes).unwrap()
}

/// The `image` crate's own decoder (zune-jpeg), the reference.
fn zune(jpeg: &[u8]) -> DynamicImage {
    image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg).unwrap()
}

fn psnr_rows(a: &DynamicImage, b: &DynamicImage, rows: u32) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    assert_eq!(a.color(), b.color());
    let n = (a.width() * a.color().bytes_per_pixel() as u32 * rows) as usize;
    let (sa, sb) = (&a.as_bytes()[..n], &b.as_bytes()[..n]);
    let mse = sa
        .iter()
        .zip(sb)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / n as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

fn psnr(a: &DynamicImage, b: &DynamicImage) -> f64 {
    psnr_rows(a, b, a.height())
}

/// Mean over rows `from..to` of each row's sample variance (luma): zero for flat grey.
fn mean_row_variance(img: &DynamicImage, from: u32, to: u32) -> f64 {
    let l = img.to_luma8();
    let mut sum = 0.0;
    for y in from..to {
        let row: Vec<f64> = (0..l.width())
            .map(|x| f64::from(l.get_pixel(x, y)[0]))
            .collect();
        let mean = row.iter().sum::<f64>() / row.len() as f64;
        sum += row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / row.len() as f64;
    }
    sum / f64::from(to - from)
}

fn compress(img: &DynamicImage, set: impl FnOnce(&mut turbojpeg::Compressor)) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(90).unwrap();
    set(&mut c);
    match img {
        DynamicImage::ImageLuma8(b) => {
            c.set_subsamp(turbojpeg::Subsamp::Gray).unwrap();
            c.compress_to_vec(turbojpeg::Image {
                pixels: b.as_raw().as_slice(),
                width: b.width() as usize,
                pitch: b.width() as usize,
                height: b.height() as usize,
                format: turbojpeg::PixelFormat::GRAY,
            })
            .unwrap()
        }
        _ => {
            let b = img.to_rgb8();
            c.compress_to_vec(turbojpeg::Image {
                pixels: b.as_raw().as_slice(),
                width: b.width() as usize,
                pitch: 3 * b.width() as usize,
                height: b.height() as usize,
                format: turbojpeg::PixelFormat::RGB,
            })
            .unwrap()
        }
    }
}

#[test]
fn clean_samples_match_the_previous_decoder() {
    for (name, jpeg) in sample_jpegs() {
        let (a, b) = (ours(&jpeg), zune(&jpeg));
        assert_eq!(a.dimensions(), b.dimensions(), "{name}");
        assert_eq!(a.color(), b.color(), "{name}");
        let p = psnr(&a, &b);
        println!("{name}: {p:.1} dB");
        assert!(p >= 40.0, "{name}: {p:.1} dB");
    }
}

#[test]
fn grey_progressive_and_subsampled_match_the_previous_decoder() {
    let photo = image::load_from_memory(&sample("coffee.png")).unwrap();
    let grey = DynamicImage::ImageLuma8(photo.to_luma8());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("grey", compress(&grey, |_| {})),
        (
            "progressive",
            compress(&photo, |c| c.set_progressive(true).unwrap()),
        ),
        (
            "4:2:0",
            compress(&photo, |c| {
                c.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap()
            }),
        ),
    ];
    for (what, jpeg) in cases {
        let (a, b) = (ours(&jpeg), zune(&jpeg));
        assert_eq!(a.color(), b.color(), "{what}");
        let p = psnr(&a, &b);
        println!("{what}: {p:.1} dB");
        assert!(p >= 40.0, "{what}: {p:.1} dB");
    }
    assert_eq!(ours(&compress(&grey, |_| {})).color(), image::ColorType::L8);
}

#[test]
fn cmyk_and_ycck_are_converted_like_the_previous_decoder() {
    let photo = image::load_from_memory(&sample("rocket.jpg"))
        .unwrap()
        .to_rgb8();
    // Inverted (Adobe) CMYK pixels, as Photoshop writes them: K carries the darkness.
    let cmyk: Vec<u8> = photo
        .pixels()
        .flat_map(|p| {
            let k = *p.0.iter().max().unwrap();
            let c = |v: u8| {
                if k == 0 {
                    0
                } else {
                    (u32::from(v) * 255 / u32::from(k)) as u8
                }
            };
            [c(p[0]), c(p[1]), c(p[2]), k]
        })
        .collect();
    for cs in [turbojpeg::Colorspace::CMYK, turbojpeg::Colorspace::YCCK] {
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(95).unwrap();
        c.set_colorspace(cs).unwrap();
        let jpeg = c
            .compress_to_vec(turbojpeg::Image {
                pixels: cmyk.as_slice(),
                width: photo.width() as usize,
                pitch: 4 * photo.width() as usize,
                height: photo.height() as usize,
                format: turbojpeg::PixelFormat::CMYK,
            })
            .unwrap();
        let (a, b) = (ours(&jpeg), zune(&jpeg));
        assert_eq!(a.color(), image::ColorType::Rgb8, "{cs:?}");
        assert_eq!(b.color(), image::ColorType::Rgb8, "{cs:?}");
        let p = psnr(&a, &b);
        println!("{cs:?}: {p:.1} dB");
        assert!(p >= 40.0, "{cs:?}: {p:.1} dB");
        // And it is the photo, not some other reading of the channels.
        let back = DynamicImage::ImageRgb8(photo.clone());
        assert!(psnr(&a, &back) >= 30.0, "{cs:?}: {:.1} dB", psnr(&a, &back));
    }
}

#[test]
fn arithmetic_lossless_and_12_bit_decode_or_fail_typed() {
    let photo = image::load_from_memory(&sample("rocket.jpg")).unwrap();
    let arith = compress(&photo, |c| c.set_arithmetic(true).unwrap());
    let a = ours(&arith);
    assert!(psnr(&a, &DynamicImage::ImageRgb8(photo.to_rgb8())) >= 35.0);

    let lossless = compress(&photo, |c| c.set_lossless(true).unwrap());
    assert_eq!(ours(&lossless).to_rgb8(), photo.to_rgb8());
    // Lossless JPEG has no DCT to scale in: shrink-on-load quietly decodes in full.
    let out = run(&lossless, &spec("scale:25"), &Limits::default()).unwrap();
    assert_eq!((out.width, out.height, out.shrink), (160, 106, 1));

    // SOF0 precision byte set to 12: libjpeg-turbo's 8-bit API refuses it with a typed error
    // (or decodes something); it never crashes.
    let mut twelve = compress(&photo, |_| {});
    let sof = twelve.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    twelve[sof + 4] = 12;
    match run(&twelve, &spec("noop"), &Limits::default()) {
        Ok(out) => println!("12-bit: decoded, {:?}", out.decode_warning),
        Err(FilterError::Decode(e)) => println!("12-bit: {e}"),
        Err(e) => panic!("12-bit: {e:?}"),
    }
}

/// Offset of the first byte of entropy-coded data (after the SOS segment).
fn scan_start(jpeg: &[u8]) -> usize {
    let sos = jpeg.windows(2).position(|w| w == [0xff, 0xda]).unwrap();
    sos + 2 + usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]))
}

/// Checks that `damaged` decodes without error, like libjpeg-turbo recovers it: the top
/// `intact` fraction matches the clean decode, and the recovered image is not flat or striped.
fn check_recovered(what: &str, clean: &[u8], damaged: &[u8], intact: f64) {
    let out = run(damaged, &spec("noop,format:png"), &Limits::default())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.decode_warning.is_some(), "{what}: no warning reported");
    let got = image::load_from_memory(&out.bytes).unwrap();
    let want = ours(clean);
    assert_eq!(got.dimensions(), want.dimensions(), "{what}");
    let rows = (f64::from(want.height()) * intact) as u32;
    let p = psnr_rows(&got, &want, rows);
    let (vg, vw) = (
        mean_row_variance(&got, 0, rows),
        mean_row_variance(&want, 0, rows),
    );
    println!(
        "{what}: {:?}, top {rows} rows {p:.1} dB, row variance {vg:.0} (clean {vw:.0})",
        out.decode_warning
    );
    assert!(p >= 40.0, "{what}: intact part {p:.1} dB");
    assert!(vg > 0.5 * vw && vg > 10.0, "{what}: flat or striped");
}

#[test]
fn damaged_jpegs_decode_as_libjpeg_turbo_recovers_them() {
    for name in ["rocket.jpg", "retina.jpg", "hubble_deep_field.jpg"] {
        let clean = sample(name);
        // Truncated at 70%: a sequential JPEG's rows arrive in order, so roughly the top
        // half is certainly complete.
        let cut = &clean[..clean.len() * 7 / 10];
        check_recovered(&format!("{name} truncated"), &clean, cut, 0.5);

        // Bytes flipped in the entropy-coded data at 75% of the scan.
        let start = scan_start(&clean);
        let at = start + (clean.len() - start) * 3 / 4;
        let mut flipped = clean.clone();
        for b in &mut flipped[at..at + 8] {
            // Never create a marker (0xff) by accident: keep the flipped byte below it.
            *b = (*b ^ 0x5a).min(0xfe);
        }
        match run(&flipped, &spec("noop"), &Limits::default()) {
            // Some flips decode to valid (wrong) coefficients without any warning.
            Ok(out) if out.decode_warning.is_none() => {
                let got = ours(&flipped);
                assert!(psnr_rows(&got, &ours(&clean), got.height() / 2) >= 40.0);
            }
            Ok(_) => check_recovered(&format!("{name} flipped"), &clean, &flipped, 0.5),
            Err(e) => panic!("{name} flipped: {e}"),
        }
    }

    // Progressive: truncation leaves whole scans missing; libjpeg-turbo still gives the
    // coarser image it has, not grey.
    let photo = image::load_from_memory(&sample("coffee.png")).unwrap();
    let prog = compress(&photo, |c| c.set_progressive(true).unwrap());
    let out = run(
        &prog[..prog.len() * 7 / 10],
        &spec("noop"),
        &Limits::default(),
    )
    .unwrap();
    assert!(out.decode_warning.is_some());
    let got = image::load_from_memory(&out.bytes).unwrap();
    assert!(psnr(&got, &ours(&prog)) >= 25.0);

    // Nothing but the header: still a typed error, never a panic.
    let header_only = &prog[..scan_start(&prog)];
    let _ = run(header_only, &spec("noop"), &Limits::default());
    assert!(matches!(
        run(&prog[..100], &spec("noop"), &Limits::default()),
        Err(FilterError::Decode(_))
    ));
}

/// (spec, expected shrink factor) for an image of `w x h`.
fn shrink_cases(w: u32, h: u32) -> Vec<(String, u32)> {
    vec![
        (format!("resize:{}x{}:exact:lanczos3", w / 2, h / 2), 2),
        (format!("resize:{}x", w / 4), 4),
        (format!("resize:{}x{}:fill:catmullrom", w / 8, h / 10), 8),
        ("scale:13".into(), 4),
        ("scale:50:triangle".into(), 2),
        (format!("resize:{}x{}:exact", w / 3, h / 3), 2),
    ]
}

#[test]
fn shrink_on_load_matches_full_decode_and_resize() {
    let off = RunOptions {
        shrink_on_load: false,
    };
    let limits = Limits::default();
    for name in ["retina.jpg", "hubble_deep_field.jpg", "rocket.jpg"] {
        let jpeg = sample(name);
        let info = imgfilters::probe(&jpeg).unwrap();
        for (s, factor) in shrink_cases(info.width, info.height) {
            let p = spec(&format!("{s},format:png"));
            let fast = run(&jpeg, &p, &limits).unwrap();
            let full = run_with(&jpeg, &p, &limits, off).unwrap();
            assert_eq!(full.shrink, 1);
            assert_eq!(fast.shrink, factor, "{name} {s}");
            assert_eq!(
                (fast.width, fast.height),
                (full.width, full.height),
                "{name} {s}"
            );
            let (a, b) = (
                image::load_from_memory(&fast.bytes).unwrap(),
                image::load_from_memory(&full.bytes).unwrap(),
            );
            let db = psnr(&a, &b);
            println!("{name} {s}: 1/{factor} {db:.1} dB");
            assert!(db >= 35.0, "{name} {s}: {db:.1} dB");
        }
        // Nothing to gain, or an op that needs every pixel first: full decode.
        for s in [
            format!("resize:{}x{}", info.width, info.height),
            format!(
                "resize:{}x{}:exact:nearest",
                info.width / 4,
                info.height / 4
            ),
            format!("crop:0:0:{}x{},resize:40x", info.width / 2, info.height / 2),
            "blur:1,scale:10".into(),
            // Thumbnail's box filter is phase-sensitive (shrink.rs).
            format!("thumbnail:{}", info.width / 8),
            "rotate:90,scale:10".into(),
            "noop".into(),
        ] {
            assert_eq!(run(&jpeg, &spec(&s), &limits).unwrap().shrink, 1, "{s}");
        }
    }
}

#[test]
fn shrink_on_load_accounts_for_exif_rotation() {
    let jpeg = sample("rocket.jpg"); // 640x427
    let rotated = with_orientation(&jpeg, 6);
    let off = RunOptions {
        shrink_on_load: false,
    };
    // Upright 427x640: a 100x160 box needs 1/4 (107x160), not 1/8 (54x80).
    for s in ["resize:100x160:exact", "resize:x160", "scale:25"] {
        let p = spec(s);
        let fast = run(&rotated, &p, &Limits::default()).unwrap();
        let full = run_with(&rotated, &p, &Limits::default(), off).unwrap();
        assert_eq!(fast.shrink, 4, "{s}");
        assert_eq!((fast.width, fast.height), (full.width, full.height), "{s}");
        assert!(fast.height > fast.width, "{s}: not upright");
    }
}

/// Inserts an APP1 Exif segment with the given orientation after SOI (big-endian TIFF, one
/// IFD entry).
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend(tiff);
    let mut seg = vec![0xff, 0xe1];
    seg.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    seg.extend(payload);
    [&jpeg[..2], &seg[..], &jpeg[2..]].concat()
}

#[test]
fn a_progressive_jpegs_coefficient_buffer_counts_against_max_alloc() {
    let photo = image::load_from_memory(&sample("coffee.png"))
        .unwrap()
        .to_rgb8();
    let (w, h) = photo.dimensions();
    let photo = DynamicImage::ImageRgb8(photo);
    let baseline = compress(&photo, |_| {});
    let progressive = compress(&photo, |c| c.set_progressive(true).unwrap());
    // Room for the decoded RGB pixels and a little more, not for the whole-image coefficient
    // buffer (three components, 2 bytes a pixel each) a progressive decode needs as well.
    let limits = Limits {
        max_alloc: u64::from(w) * u64::from(h) * 3 + 4096,
        ..Limits::default()
    };
    run(&baseline, &spec("noop,format:png"), &limits).expect("a baseline JPEG fits");
    match run(&progressive, &spec("noop,format:png"), &limits) {
        Err(FilterError::LimitExceeded(m)) => assert!(m.contains("bytes"), "{m}"),
        other => panic!(
            "a progressive JPEG past max_alloc: {:?}",
            other.map(|o| o.width)
        ),
    }
    // With room for both it decodes.
    let roomy = Limits {
        max_alloc: u64::from(w) * u64::from(h) * 9 + (1 << 20),
        ..Limits::default()
    };
    run(&progressive, &spec("noop,format:png"), &roomy).expect("fits with its coefficients");
}
