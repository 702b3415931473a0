//! Lossy WebP and AVIF output through the public API, on a real photograph
//! (samples/coffee.png): round trips through an independent decoder, quality against size,
//! lossy against lossless, and the format byte.
//!
//! Trust boundary: none crossed here; the input is a checked-in sample standing in for a
//! client upload.

use imgfilters::image::{self, DynamicImage, ImageFormat};
use imgfilters::{from_wire_code, run, wire_code, FilterError, Limits, Pipeline};

fn coffee() -> Vec<u8> {
    let path = format!("{}/../samples/coffee.png", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn encode(input: &[u8], spec: &str) -> (ImageFormat, Vec<u8>) {
    let pipeline: Pipeline = spec.parse().unwrap();
    let out = run(input, &pipeline, &Limits::default()).unwrap_or_else(|e| panic!("{spec}: {e}"));
    (out.format, out.bytes)
}

/// PSNR in dB over the RGB samples of two 8-bit RGB images of the same size.
fn psnr(a: &DynamicImage, b: &DynamicImage) -> f64 {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

#[test]
fn lossy_webp_is_much_smaller_than_lossless_and_decodes_close_to_it() {
    let input = coffee();
    let (_, reference) = encode(&input, "resize:300x200,format:png");
    let reference = image::load_from_memory(&reference).unwrap();
    let (f_lossless, lossless) = encode(&input, "resize:300x200,format:webp");
    let (f_lossy, lossy) = encode(&input, "resize:300x200,format:webp:80");
    assert_eq!(
        (f_lossless, f_lossy),
        (ImageFormat::WebP, ImageFormat::WebP)
    );
    // Plain `format:webp` and `format:webp:lossless` are the same lossless bytes.
    assert_eq!(
        encode(&input, "resize:300x200,format:webp:lossless").1,
        lossless
    );
    assert!(
        lossy.len() * 4 < lossless.len(),
        "lossy {} vs lossless {} bytes",
        lossy.len(),
        lossless.len()
    );
    // The `image` crate's (pure-Rust) WebP decoder reads both.
    let back_lossless = image::load_from_memory(&lossless).unwrap();
    assert_eq!(back_lossless.to_rgb8(), reference.to_rgb8());
    let back = image::load_from_memory_with_format(&lossy, ImageFormat::WebP).unwrap();
    assert_eq!((back.width(), back.height()), (300, 200));
    let db = psnr(&back, &reference);
    assert!(db > 30.0, "webp:80 decodes at {db:.1} dB");
}

#[test]
fn webp_size_and_fidelity_grow_with_quality() {
    let input = coffee();
    let (_, reference) = encode(&input, "resize:300x200,format:png");
    let reference = image::load_from_memory(&reference).unwrap();
    let mut last: Option<(usize, f64)> = None;
    for q in [10, 40, 70, 95] {
        let (_, data) = encode(&input, &format!("resize:300x200,format:webp:{q}"));
        let db = psnr(&image::load_from_memory(&data).unwrap(), &reference);
        if let Some((size, prev_db)) = last {
            assert!(data.len() > size, "webp:{q} is {} bytes", data.len());
            assert!(db > prev_db, "webp:{q} at {db:.1} dB");
        }
        last = Some((data.len(), db));
    }
}

#[test]
fn avif_is_an_avif_file_of_the_right_size_and_shrinks_with_quality() {
    let input = coffee();
    let (_, lossless_webp) = encode(&input, "resize:300x200,format:webp");
    let mut last = usize::MAX;
    for q in [95, 60, 30] {
        let (format, data) = encode(&input, &format!("resize:300x200,format:avif:{q}"));
        assert_eq!(format, ImageFormat::Avif);
        // ISO BMFF: the first box is `ftyp` with brand `avif`.
        assert_eq!(&data[4..12], b"ftypavif", "avif:{q}");
        assert_eq!(image::guess_format(&data).unwrap(), ImageFormat::Avif);
        let avif = avif_parse::read_avif(&mut &data[..]).unwrap();
        let meta = avif.primary_item_metadata().unwrap();
        assert!(meta.still_picture);
        assert_eq!(
            (meta.max_frame_width.get(), meta.max_frame_height.get()),
            (300, 200)
        );
        assert!(avif.alpha_item.is_none(), "coffee.png is opaque");
        assert!(data.len() < last, "avif:{q} is {} bytes", data.len());
        last = data.len();
    }
    // `format:avif` is quality 60.
    assert_eq!(
        encode(&input, "resize:300x200,format:avif").1,
        encode(&input, "resize:300x200,format:avif:60").1
    );
    assert!(last * 10 < lossless_webp.len());
}

#[test]
fn alpha_survives_lossy_webp_and_avif() {
    let mut img = image::RgbaImage::new(48, 32);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgba([
            (x * 5) as u8,
            (y * 7) as u8,
            90,
            if x < 24 { 255 } else { 0 },
        ]);
    }
    let mut png = Vec::new();
    DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    let (_, webp) = encode(&png, "format:webp:50");
    let back = image::load_from_memory(&webp).unwrap().to_rgba8();
    assert_eq!(back.get_pixel(2, 2)[3], 255);
    assert_eq!(back.get_pixel(40, 2)[3], 0);
    let (_, avif) = encode(&png, "format:avif:50");
    assert!(avif_parse::read_avif(&mut &avif[..])
        .unwrap()
        .alpha_item
        .is_some());
}

#[test]
fn avif_has_a_wire_code_but_is_not_an_input() {
    assert_eq!(wire_code(ImageFormat::Avif), 7);
    assert_eq!(from_wire_code(7), Some(ImageFormat::Avif));
    let (_, avif) = encode(&coffee(), "resize:64x,format:avif");
    let err = run(&avif, &Pipeline::default(), &Limits::default()).unwrap_err();
    assert!(matches!(err, FilterError::UnsupportedFormat(_)), "{err}");
}
