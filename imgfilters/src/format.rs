//! Image formats: which inputs are accepted, and encoding the result.
//!
//! Trust boundary: the input format is sniffed from the (hostile) bytes, never from a file
//! name, and only the six formats the workspace's `image` build supports are accepted. On the
//! output side the image is already ours; the job here is to convert its colour type so that
//! encoding a valid image never fails for a reason the client cannot fix, and to write no
//! metadata: `DynamicImage` carries none, and none of the encoders below is given EXIF, ICC or
//! text chunks, so EXIF/ICC/XMP from the input are stripped. The lossy WebP and AVIF
//! encoders live in `encode_web.rs`.

use image::codecs::{
    bmp::BmpEncoder, gif::GifEncoder, jpeg::JpegEncoder, png::PngEncoder, tiff::TiffEncoder,
    webp::WebPEncoder,
};
use image::{DynamicImage, ImageFormat};

use crate::encode_web::{encode_avif, encode_webp_lossy};
use crate::error::FilterError;
use crate::ops::{OutputFormat, DEFAULT_AVIF_QUALITY, DEFAULT_JPEG_QUALITY};
use crate::sink::Sink;

/// Input formats this crate handles, which are all output formats as well.
pub const SUPPORTED_FORMATS: [ImageFormat; 6] = [
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::Gif,
    ImageFormat::WebP,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
];

/// Every output format, in wire-code order: the inputs, then AVIF (output only: this build
/// has no AV1 decoder, so an AVIF input is refused as an unsupported format).
pub const OUTPUT_FORMATS: [ImageFormat; 7] = [
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::Gif,
    ImageFormat::WebP,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
    ImageFormat::Avif,
];

/// The wire protocol's code for an image format (docs/PROTOCOL.md, the `format` byte of
/// JOB_RESULT): its position in [`OUTPUT_FORMATS`] plus one (1 png, 2 jpeg, 3 gif, 4 webp,
/// 5 bmp, 6 tiff, 7 avif), 0 for any other. The server writes it and the client reads it, so
/// the table lives here, in the crate both use. Lossy and lossless WebP share code 4.
pub fn wire_code(format: ImageFormat) -> u8 {
    OUTPUT_FORMATS
        .iter()
        .position(|&f| f == format)
        .map_or(0, |i| i as u8 + 1)
}

/// The format a wire code names; `None` for 0 and unknown codes.
pub fn from_wire_code(code: u8) -> Option<ImageFormat> {
    OUTPUT_FORMATS
        .get(usize::from(code).checked_sub(1)?)
        .copied()
}

/// GIF quantiser speed (1 = best, 30 = fastest). 10 is the `gif` crate's recommended
/// trade-off; `image`'s own default of 1 costs several times more CPU per request.
const GIF_SPEED: i32 = 10;

/// Sniffs the format from the first bytes and refuses anything not in [`SUPPORTED_FORMATS`].
pub(crate) fn sniff(input: &[u8]) -> Result<ImageFormat, FilterError> {
    let format = image::guess_format(input)
        .map_err(|_| FilterError::UnsupportedFormat("unrecognised image signature".into()))?;
    if !SUPPORTED_FORMATS.contains(&format) {
        return Err(FilterError::UnsupportedFormat(format!("{format:?}")));
    }
    Ok(format)
}

/// The concrete output format and quality for a request. The quality is `None` for the
/// format's default: JPEG 85, AVIF 60, and lossless for WebP (so `format:same` on a WebP
/// input, like `format:webp`, stays lossless); the lossless formats ignore it.
pub(crate) fn resolve(output: OutputFormat, input: ImageFormat) -> (ImageFormat, Option<u8>) {
    match output {
        OutputFormat::Same => (input, None),
        OutputFormat::Png => (ImageFormat::Png, None),
        OutputFormat::Jpeg { quality } => (ImageFormat::Jpeg, Some(quality)),
        OutputFormat::Gif => (ImageFormat::Gif, None),
        OutputFormat::Webp => (ImageFormat::WebP, None),
        OutputFormat::WebpLossy { quality } => (ImageFormat::WebP, Some(quality)),
        OutputFormat::Avif { quality } => (ImageFormat::Avif, Some(quality)),
        OutputFormat::Bmp => (ImageFormat::Bmp, None),
        OutputFormat::Tiff => (ImageFormat::Tiff, None),
    }
}

/// Float images become 16-bit right after decoding. None of the outputs except TIFF can hold
/// floats, and several `image` kernels (brighten, unsharpen) cast samples to `i32` with an
/// `unwrap` that panics on NaN or huge values, which a hostile TIFF can contain. The
/// float-to-u16 conversion clamps, and maps NaN to a defined value.
pub(crate) fn normalize_depth(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageRgb32F(_) => DynamicImage::ImageRgb16(img.into_rgb16()),
        DynamicImage::ImageRgba32F(_) => DynamicImage::ImageRgba16(img.into_rgba16()),
        other => other,
    }
}

/// Converts to a colour type the encoder for `format` accepts, losing as little as possible:
/// 16-bit stays 16-bit for PNG/TIFF, alpha is kept where the format has it. `lossy` is
/// whether WebP goes to libwebp's lossy encoder, which takes RGB/RGBA only.
pub(crate) fn prepare(img: DynamicImage, format: ImageFormat, lossy: bool) -> DynamicImage {
    use DynamicImage as D;
    let img = normalize_depth(img);
    match format {
        // libwebp (lossy) and ravif take 8-bit RGB or RGBA; grey becomes RGB.
        ImageFormat::Avif => rgb8_or_rgba8(img),
        ImageFormat::WebP if lossy => rgb8_or_rgba8(img),
        ImageFormat::Jpeg => match img {
            // JPEG has no alpha: the alpha channel is dropped, not composited.
            D::ImageLuma8(_) | D::ImageRgb8(_) => img,
            D::ImageLumaA8(_) | D::ImageLuma16(_) | D::ImageLumaA16(_) => {
                D::ImageLuma8(img.into_luma8())
            }
            _ => D::ImageRgb8(img.into_rgb8()),
        },
        ImageFormat::Gif => match img {
            D::ImageRgb8(_) | D::ImageRgba8(_) => img,
            _ if img.color().has_alpha() => D::ImageRgba8(img.into_rgba8()),
            _ => D::ImageRgb8(img.into_rgb8()),
        },
        ImageFormat::WebP | ImageFormat::Bmp => match img {
            D::ImageLuma8(_) | D::ImageLumaA8(_) | D::ImageRgb8(_) | D::ImageRgba8(_) => img,
            D::ImageLuma16(_) => D::ImageLuma8(img.into_luma8()),
            D::ImageLumaA16(_) => D::ImageLumaA8(img.into_luma_alpha8()),
            _ if img.color().has_alpha() => D::ImageRgba8(img.into_rgba8()),
            _ => D::ImageRgb8(img.into_rgb8()),
        },
        ImageFormat::Tiff => match img {
            // The TIFF encoder has no grey+alpha variant.
            D::ImageLumaA8(_) => D::ImageRgba8(img.into_rgba8()),
            D::ImageLumaA16(_) => D::ImageRgba16(img.into_rgba16()),
            _ => img,
        },
        // PNG holds every 8/16-bit colour type.
        _ => img,
    }
}

fn rgb8_or_rgba8(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => img,
        _ if img.color().has_alpha() => DynamicImage::ImageRgba8(img.into_rgba8()),
        _ => DynamicImage::ImageRgb8(img.into_rgb8()),
    }
}

/// Encodes `img` as `format` into `out`, which is cleared first (its capacity is reused).
/// `quality` is that of JPEG, lossy WebP and AVIF, `None` for the format's default (see
/// [`resolve`]); the lossless formats ignore it.
pub(crate) fn encode(
    img: DynamicImage,
    format: ImageFormat,
    quality: Option<u8>,
    out: &mut Sink,
) -> Result<(), FilterError> {
    out.clear();
    let webp_lossy = format == ImageFormat::WebP && quality.is_some();
    let img = prepare(img, format, webp_lossy);
    let result = match (format, quality) {
        (ImageFormat::Png, _) => img.write_with_encoder(PngEncoder::new(&mut *out)),
        (ImageFormat::Jpeg, q) => return encode_jpeg(&img, q.unwrap_or(DEFAULT_JPEG_QUALITY), out),
        // These two append only once the encode has succeeded, so `out` stays empty on error.
        (ImageFormat::WebP, Some(q)) => return encode_webp_lossy(&img, q, out),
        (ImageFormat::Avif, q) => return encode_avif(&img, q.unwrap_or(DEFAULT_AVIF_QUALITY), out),
        (ImageFormat::Gif, _) => {
            img.write_with_encoder(GifEncoder::new_with_speed(&mut *out, GIF_SPEED))
        }
        (ImageFormat::WebP, None) => img.write_with_encoder(WebPEncoder::new_lossless(&mut *out)),
        (ImageFormat::Bmp, _) => img.write_with_encoder(BmpEncoder::new(&mut *out)),
        // TIFF needs Seek, which the sink has; it starts at 0 of the just-cleared output.
        (ImageFormat::Tiff, _) => img.write_with_encoder(TiffEncoder::new(&mut *out)),
        (other, _) => {
            return Err(FilterError::Encode(format!(
                "output format {other:?} is not supported"
            )))
        }
    };
    result.map_err(|e| {
        out.clear();
        FilterError::Encode(e.to_string())
    })
}

/// Baseline JPEG encoding, in place of `image`'s encoder (several times slower).
///
/// With the default `turbojpeg` feature this is libjpeg-turbo 3 (built from the source
/// vendored in `turbojpeg-sys` and linked statically, so its version is pinned by Cargo.lock,
/// not by the distribution; SIMD chosen at run time; ~4 ms/MP). Without the feature, and for
/// sides of 65501..=65535 pixels (beyond libjpeg-turbo's limit), it is the pure-Rust
/// `jpeg-encoder` (AVX2 when the CPU has it; ~16 ms/MP). Either is set up like
/// `image`'s encoder: the libjpeg quality scaling of the standard (Annex K) tables, standard
/// Huffman tables, the accurate integer DCT, no chroma subsampling (4:4:4), grey stays one
/// component, a JFIF header and no other metadata. Decoded quality against the source and
/// file size stay within 1 dB and 30% of `image`'s encoder (tests/fidelity.rs).
///
/// TurboJPEG 3 is used rather than Debian's TurboJPEG 2 because the 2.x API switches to the
/// fast, less accurate DCT below quality 96 (up to 1.3 dB worse than `image` at quality 95)
/// and reads `TJ_OPTIMIZE`/`TJ_PROGRESSIVE`/... from the environment, which could make the
/// server's and `--local`'s bytes differ.
///
/// Trust boundary: libjpeg-turbo is C, but it only ever sees pixels this crate produced, in a
/// buffer whose length matches the dimensions (checked by the binding), never network bytes.
/// `img` is L8 or RGB8 (see [`prepare`]); anything else goes through `image`'s encoder.
fn encode_jpeg(img: &DynamicImage, quality: u8, out: &mut Sink) -> Result<(), FilterError> {
    let fail = |out: &mut Sink, e: String| {
        out.clear();
        FilterError::Encode(e)
    };
    let (data, gray) = match img {
        DynamicImage::ImageLuma8(b) => (b.as_raw(), true),
        DynamicImage::ImageRgb8(b) => (b.as_raw(), false),
        _ => {
            return img
                .write_with_encoder(JpegEncoder::new_with_quality(&mut *out, quality))
                .map_err(|e| fail(out, e.to_string()))
        }
    };
    // JPEG stores each side in 16 bits.
    let (Ok(w), Ok(h)) = (u16::try_from(img.width()), u16::try_from(img.height())) else {
        return Err(fail(
            out,
            format!(
                "JPEG cannot hold {}x{} pixels (at most 65535 per side)",
                img.width(),
                img.height()
            ),
        ));
    };
    // libjpeg-turbo refuses sides above 65500 (its JPEG_MAX_DIMENSION); `image` and
    // jpeg-encoder go to 65535, so the last few sizes keep working through jpeg-encoder.
    let result = if cfg!(feature = "turbojpeg") && w <= 65500 && h <= 65500 {
        turbo_jpeg(data, w, h, gray, quality, out)
    } else {
        rust_jpeg(data, w, h, gray, quality, out)
    };
    result.map_err(|e| fail(out, e))
}

#[cfg(feature = "turbojpeg")]
fn turbo_jpeg(
    data: &[u8],
    w: u16,
    h: u16,
    gray: bool,
    quality: u8,
    out: &mut Sink,
) -> Result<(), String> {
    use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};
    let (format, subsamp) = if gray {
        (PixelFormat::GRAY, Subsamp::Gray)
    } else {
        (PixelFormat::RGB, Subsamp::None)
    };
    let width = usize::from(w);
    let image = Image {
        pixels: data,
        width,
        pitch: width * format.size(),
        height: usize::from(h),
        format,
    };
    let mut compressor = Compressor::new().map_err(|e| e.to_string())?;
    compressor
        .set_quality(i32::from(quality))
        .and_then(|()| compressor.set_subsamp(subsamp))
        .map_err(|e| e.to_string())?;
    // Straight into the sink's region (a worker's ring slot) when libjpeg-turbo's worst case
    // for this size fits what is left of it: with a caller's buffer it cannot grow, so a
    // smaller one could fail after the whole compression. Otherwise into libjpeg-turbo's own
    // growing buffer, copied once into the sink.
    let worst = compressor
        .buf_len(width, usize::from(h))
        .map_err(|e| e.to_string())?;
    if let Some(written) =
        out.append_in_region(worst, |region| compressor.compress_to_slice(image, region))
    {
        return written.map(drop).map_err(|e| e.to_string());
    }
    let jpeg = compressor
        .compress_to_owned(image)
        .map_err(|e| e.to_string())?;
    out.extend_from_slice(&jpeg);
    Ok(())
}

#[cfg(not(feature = "turbojpeg"))]
fn turbo_jpeg(
    _data: &[u8],
    _w: u16,
    _h: u16,
    _gray: bool,
    _quality: u8,
    _out: &mut Sink,
) -> Result<(), String> {
    Err("built without the turbojpeg feature".into())
}

fn rust_jpeg(
    data: &[u8],
    w: u16,
    h: u16,
    gray: bool,
    quality: u8,
    out: &mut Sink,
) -> Result<(), String> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let mut encoder = Encoder::new(&mut *out, quality);
    // jpeg-encoder would pick 4:2:0 below quality 90; `image` never subsamples.
    encoder.set_sampling_factor(SamplingFactor::F_1_1);
    let color = if gray {
        ColorType::Luma
    } else {
        ColorType::Rgb
    };
    encoder.encode(data, w, h, color).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn wire_codes_are_the_protocols() {
        use super::*;
        let named = [
            (ImageFormat::Png, 1),
            (ImageFormat::Jpeg, 2),
            (ImageFormat::Gif, 3),
            (ImageFormat::WebP, 4),
            (ImageFormat::Bmp, 5),
            (ImageFormat::Tiff, 6),
            (ImageFormat::Avif, 7),
        ];
        for (f, c) in named {
            assert_eq!(wire_code(f), c, "{f:?}");
            assert_eq!(from_wire_code(c), Some(f));
        }
        assert_eq!(wire_code(ImageFormat::Ico), 0);
        assert_eq!(from_wire_code(0), None);
        assert_eq!(from_wire_code(8), None);
        // AVIF has a wire code, but is not an input format.
        assert!(!SUPPORTED_FORMATS.contains(&ImageFormat::Avif));
    }

    use super::*;

    /// [`super::encode`] into a `Vec`, as these tests read the output.
    fn encode(
        img: DynamicImage,
        format: ImageFormat,
        quality: Option<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), FilterError> {
        let mut sink = Sink::with_spill(&mut [], std::mem::take(out));
        let result = super::encode(img, format, quality, &mut sink);
        *out = sink.into_vec();
        result
    }

    fn sample(kind: &str) -> DynamicImage {
        let mut img = DynamicImage::new_rgba16(5, 3);
        if let DynamicImage::ImageRgba16(buf) = &mut img {
            for (x, y, p) in buf.enumerate_pixels_mut() {
                *p = image::Rgba([x as u16 * 10000, y as u16 * 20000, 30000, 40000]);
            }
        }
        match kind {
            "l8" => DynamicImage::ImageLuma8(img.to_luma8()),
            "la8" => DynamicImage::ImageLumaA8(img.to_luma_alpha8()),
            "rgb8" => DynamicImage::ImageRgb8(img.to_rgb8()),
            "rgba8" => DynamicImage::ImageRgba8(img.to_rgba8()),
            "l16" => DynamicImage::ImageLuma16(img.to_luma16()),
            "la16" => DynamicImage::ImageLumaA16(img.to_luma_alpha16()),
            "rgb16" => DynamicImage::ImageRgb16(img.to_rgb16()),
            "rgba16" => img,
            "rgb32f" => DynamicImage::ImageRgb32F(img.to_rgb32f()),
            "rgba32f" => DynamicImage::ImageRgba32F(img.to_rgba32f()),
            _ => unreachable!(),
        }
    }

    const KINDS: [&str; 10] = [
        "l8", "la8", "rgb8", "rgba8", "l16", "la16", "rgb16", "rgba16", "rgb32f", "rgba32f",
    ];

    #[test]
    fn every_colour_type_encodes_in_every_format() {
        // Every input format at its default (lossless WebP), then lossy WebP.
        let targets = SUPPORTED_FORMATS
            .map(|f| (f, None))
            .into_iter()
            .chain([(ImageFormat::Jpeg, Some(90)), (ImageFormat::WebP, Some(90))]);
        for kind in KINDS {
            for (format, quality) in targets.clone() {
                let mut out = Vec::new();
                encode(sample(kind), format, quality, &mut out)
                    .unwrap_or_else(|e| panic!("{kind} as {format:?}: {e}"));
                let back = image::load_from_memory(&out)
                    .unwrap_or_else(|e| panic!("{kind} as {format:?} does not decode: {e}"));
                assert_eq!(image::guess_format(&out).unwrap(), format);
                assert_eq!((back.width(), back.height()), (5, 3), "{kind} {format:?}");
            }
        }
    }

    #[test]
    fn every_colour_type_encodes_as_avif() {
        for kind in KINDS {
            let mut out = Vec::new();
            encode(sample(kind), ImageFormat::Avif, Some(60), &mut out)
                .unwrap_or_else(|e| panic!("{kind} as AVIF: {e}"));
            assert_eq!(image::guess_format(&out).unwrap(), ImageFormat::Avif);
            let avif = avif_parse::read_avif(&mut &out[..]).unwrap();
            let meta = avif.primary_item_metadata().unwrap();
            let size = (meta.max_frame_width.get(), meta.max_frame_height.get());
            assert_eq!(size, (5, 3), "{kind}");
            // The samples' alpha is 40000/65535 everywhere: kept where the input has alpha.
            let has_alpha = kind.starts_with("la") || kind.starts_with("rgba");
            assert_eq!(avif.alpha_item.is_some(), has_alpha, "{kind}");
        }
    }

    #[test]
    fn depth_and_alpha_kept_where_the_format_allows() {
        let enc = |kind, format| {
            let mut out = Vec::new();
            encode(sample(kind), format, None, &mut out).unwrap();
            image::load_from_memory(&out).unwrap().color()
        };
        use image::ColorType as C;
        assert_eq!(enc("rgba16", ImageFormat::Png), C::Rgba16);
        assert_eq!(enc("l16", ImageFormat::Png), C::L16);
        assert_eq!(enc("rgb16", ImageFormat::Tiff), C::Rgb16);
        assert_eq!(enc("la16", ImageFormat::Tiff), C::Rgba16);
        assert_eq!(enc("rgba16", ImageFormat::Jpeg), C::Rgb8);
        assert_eq!(enc("la8", ImageFormat::Jpeg), C::L8);
        assert_eq!(enc("rgba16", ImageFormat::WebP), C::Rgba8);
        let lossy = |kind| {
            let mut out = Vec::new();
            encode(sample(kind), ImageFormat::WebP, Some(80), &mut out).unwrap();
            image::load_from_memory(&out).unwrap().color()
        };
        assert_eq!(lossy("la16"), C::Rgba8);
        assert_eq!(lossy("l8"), C::Rgb8);
        assert_eq!(enc("rgba8", ImageFormat::Bmp), C::Rgba8);
        assert_eq!(enc("rgb32f", ImageFormat::Png), C::Rgb16);
    }

    #[test]
    fn nan_floats_are_normalised_without_panicking() {
        let mut img = image::Rgb32FImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([f32::NAN, f32::INFINITY, -5.0]));
        let img = normalize_depth(DynamicImage::ImageRgb32F(img));
        assert_eq!(img.color(), image::ColorType::Rgb16);
        let img = img.brighten(10);
        assert_eq!(img.as_rgb16().unwrap().get_pixel(0, 0)[2], 10);
    }

    #[test]
    fn sniff_refuses_unknown_and_unsupported() {
        assert!(matches!(
            sniff(b"hello world, not an image"),
            Err(FilterError::UnsupportedFormat(_))
        ));
        assert!(matches!(sniff(b""), Err(FilterError::UnsupportedFormat(_))));
        // A QOI signature: recognised by `image`, but not enabled in this build.
        assert!(matches!(
            sniff(b"qoif\0\0\0\x01\0\0\0\x01\x03\0"),
            Err(FilterError::UnsupportedFormat(_))
        ));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap(), ImageFormat::Png);
    }

    #[test]
    fn jpeg_side_over_65535_is_a_typed_error() {
        for img in [
            DynamicImage::new_luma8(65536, 1),
            DynamicImage::new_rgb8(1, 65536),
        ] {
            let mut out = vec![1, 2, 3];
            assert!(matches!(
                encode(img, ImageFormat::Jpeg, Some(85), &mut out),
                Err(FilterError::Encode(_))
            ));
            assert!(out.is_empty());
        }
        // 65535 is still fine.
        let mut out = Vec::new();
        encode(
            DynamicImage::new_luma8(65535, 1),
            ImageFormat::Jpeg,
            Some(85),
            &mut out,
        )
        .unwrap();
        let back = image::load_from_memory(&out).unwrap();
        assert_eq!((back.width(), back.height()), (65535, 1));
    }

    #[test]
    fn too_large_for_the_format_is_a_typed_error() {
        // WebP lossless tops out at 16384 pixels per side, lossy at 16383.
        for (side, quality) in [(16385, None), (16384, Some(80))] {
            let img = DynamicImage::new_luma8(side, 1);
            let mut out = vec![1, 2, 3];
            assert!(matches!(
                encode(img, ImageFormat::WebP, quality, &mut out),
                Err(FilterError::Encode(_))
            ));
            assert!(out.is_empty());
        }
    }
}
