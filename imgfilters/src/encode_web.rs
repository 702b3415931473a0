//! The web's lossy output formats: lossy WebP (libwebp) and AVIF (rav1e through ravif).
//!
//! Trust boundary: like the other encoders, these only ever see pixels this crate produced
//! (8-bit RGB or RGBA from [`crate::format::prepare`], a buffer whose length matches the
//! dimensions), never network bytes. They run inside imgserver's sandboxed filter worker, so
//! neither may create a thread or open a file: libwebp is given `thread_level = 0` and
//! rav1e/ravif are built without their `threading` feature (their rayon calls then run on
//! the calling thread) and asked for one thread. A size the format cannot hold (WebP: 16383
//! pixels per side) is a typed [`FilterError::Encode`], never a panic.
//!
//! Each encoder appends to `out` only through `extend_from_slice`, so moving to a generic
//! `std::io::Write` sink is a change of parameter type.

use image::DynamicImage;

use crate::error::FilterError;
use crate::sink::Sink;

/// rav1e speed preset, 1 (slowest, smallest) ..= 10 (fastest). Two steps faster than
/// ravif's default of 4: each step trades some size for encode time, and here one request is
/// encoded on one core under the job deadline. Not tuned beyond that (see bench/formats.py
/// for what 6 costs).
const AVIF_SPEED: u8 = 6;

/// libwebp effort, 0 (fastest) ..= 6 (smallest); 4 is libwebp's (and cwebp's, and sharp's)
/// default, kept so that sizes compare with the tools people know.
const WEBP_METHOD: i32 = 4;

/// Largest side lossy (VP8) WebP can store.
const WEBP_MAX_SIDE: u32 = 16383;

/// The 8-bit interleaved pixels of an RGB8 or RGBA8 image, and whether they carry alpha.
fn rgb_or_rgba(img: &DynamicImage) -> Result<(&[u8], bool), FilterError> {
    match img {
        DynamicImage::ImageRgb8(b) => Ok((b.as_raw(), false)),
        DynamicImage::ImageRgba8(b) => Ok((b.as_raw(), true)),
        other => Err(FilterError::Encode(format!(
            "internal: {:?} reached the web encoders unconverted",
            other.color()
        ))),
    }
}

/// Lossy WebP at `quality` (1..=100) through libwebp (built from the source libwebp-sys
/// vendors, linked statically): libwebp's default settings otherwise, alpha (when present)
/// compressed losslessly as libwebp does by default, no metadata chunks.
pub(crate) fn encode_webp_lossy(
    img: &DynamicImage,
    quality: u8,
    out: &mut Sink,
) -> Result<(), FilterError> {
    let (data, alpha) = rgb_or_rgba(img)?;
    let (w, h) = (img.width(), img.height());
    if w > WEBP_MAX_SIDE || h > WEBP_MAX_SIDE {
        return Err(FilterError::Encode(format!(
            "lossy WebP cannot hold {w}x{h} pixels (at most {WEBP_MAX_SIDE} per side)"
        )));
    }
    let layout = if alpha {
        webp::PixelLayout::Rgba
    } else {
        webp::PixelLayout::Rgb
    };
    let mut config = webp::WebPConfig::new()
        .map_err(|()| FilterError::Encode("libwebp: config version mismatch".into()))?;
    config.lossless = 0;
    config.quality = f32::from(quality);
    config.method = WEBP_METHOD;
    // No encoder threads: the worker's seccomp filter kills a thread-creating process.
    config.thread_level = 0;
    let webp = webp::Encoder::new(data, layout, w, h)
        .encode_advanced(&config)
        .map_err(|e| FilterError::Encode(format!("libwebp: {e:?}")))?;
    out.extend_from_slice(&webp);
    Ok(())
}

/// AVIF at `quality` (1..=100) through ravif and rav1e: ravif's defaults otherwise (4:4:4,
/// 10-bit AV1, alpha as a second AV1 image only when some pixel is not opaque, alpha at
/// ravif's alpha quality for `quality`), speed [`AVIF_SPEED`], one thread, no metadata.
pub(crate) fn encode_avif(
    img: &DynamicImage,
    quality: u8,
    out: &mut Sink,
) -> Result<(), FilterError> {
    let (data, alpha) = rgb_or_rgba(img)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let encoder = ravif::Encoder::new()
        .with_quality(f32::from(quality))
        .with_speed(AVIF_SPEED)
        .with_num_threads(Some(1));
    let fail = |e: ravif::Error| FilterError::Encode(format!("AVIF: {e}"));
    // ravif takes its own pixel types; the copy is small next to the AV1 encode.
    let encoded = if alpha {
        let px: Vec<ravif::RGBA8> = data
            .chunks_exact(4)
            .map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        encoder.encode_rgba(ravif::Img::new(&px[..], w, h))
    } else {
        let px: Vec<ravif::RGB8> = data
            .chunks_exact(3)
            .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
            .collect();
        encoder.encode_rgb(ravif::Img::new(&px[..], w, h))
    }
    .map_err(fail)?;
    out.extend_from_slice(&encoded.avif_file);
    Ok(())
}
