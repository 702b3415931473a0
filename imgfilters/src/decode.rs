//! Bounded decoding of untrusted image bytes, and header-only probing.
//!
//! Trust boundary: this is where hostile bytes from the network first meet a parser. The order
//! of checks is the point of this file: input length, then format sniffing, then the header's
//! dimensions against `max_pixels` and the caller's geometry pre-check, and only then is the
//! pixel buffer allocated and filled. Every decoder failure becomes a typed [`FilterError`].
//!
//! JPEG goes to libjpeg-turbo (`jpeg.rs`, the default `turbojpeg` feature), which applies the
//! same checks in the same order and can shrink on load; every other format, and JPEG without
//! the feature or with a header libjpeg-turbo only reads with a warning, goes to the `image`
//! crate's Rust decoders (png, zune-jpeg, gif, image-webp, bmp, tiff).

use std::io::Cursor;

use image::error::ImageError;
use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::error::FilterError;
use crate::format::{normalize_depth, sniff};
use crate::limits::Limits;
use crate::orient::{make_upright, oriented_dimensions};

/// What the header says about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    /// Stored width, before any EXIF orientation is applied.
    pub width: u32,
    /// Stored height, before any EXIF orientation is applied.
    pub height: u32,
    /// Colour type the decoder would produce.
    pub color: ColorType,
}

/// Reads format, dimensions and colour type from the header only; no pixel data is decoded, so
/// this is cheap even for an image that [`crate::run`] would refuse as too large. Header parsing
/// is bounded by the default [`Limits::max_alloc`]; no other limit is applied.
pub fn probe(input: &[u8]) -> Result<ImageInfo, FilterError> {
    let limits = Limits::default();
    let (decoder, format) = open(input, &limits)?;
    let (width, height) = decoder.dimensions();
    Ok(ImageInfo {
        format,
        width,
        height,
        color: decoder.color_type(),
    })
}

/// A decoded, upright image.
pub(crate) struct Decoded {
    pub image: DynamicImage,
    pub format: ImageFormat,
    /// The decoder recovered from damaged data and said so (libjpeg-turbo's warning text).
    pub warning: Option<&'static str>,
    /// Decoded at 1/`shrink` of the header's size (1, 2, 4 or 8).
    pub shrink: u32,
}

/// Decodes `input` within `limits` and returns the upright image and its format.
///
/// `plan` is called with the upright dimensions after the header has been read but before
/// any pixel is decoded, so a request whose ops would be refused anyway costs no decode. It
/// returns the smallest upright size the pipeline needs (shrink-on-load), or `None`: a JPEG
/// decoded by libjpeg-turbo may then come back smaller than its header says, by a DCT scale
/// factor of 1/2, 1/4 or 1/8, but never smaller than that size. Other decoders ignore it.
/// Animated GIF/WebP: only the first frame is decoded. Float images come back as 16-bit.
pub(crate) fn decode(
    input: &[u8],
    limits: &Limits,
    mut plan: impl FnMut(u32, u32) -> Result<Option<(u32, u32)>, FilterError>,
) -> Result<Decoded, FilterError> {
    let len = input.len() as u64;
    if len > limits.max_input_bytes {
        return Err(FilterError::InputTooLarge {
            len,
            limit: limits.max_input_bytes,
        });
    }
    #[cfg(feature = "turbojpeg")]
    if sniff(input)? == ImageFormat::Jpeg {
        if let Some(d) = crate::jpeg::decode(input, limits, &mut plan)? {
            let mut image = d.image;
            make_upright(&mut image, d.orientation);
            return Ok(Decoded {
                image,
                format: ImageFormat::Jpeg,
                warning: d.warning,
                shrink: d.shrink,
            });
        }
    }

    let (mut decoder, format) = open(input, limits)?;
    let (width, height) = decoder.dimensions();
    limits.check_pixels(width.into(), height.into())?;
    if width == 0 || height == 0 {
        return Err(FilterError::Decode(format!(
            "image has zero size ({width}x{height})"
        )));
    }

    // Mirrors `ImageReader::decode`: the pixel buffer is reserved out of max_alloc, and the
    // decoder's own scratch allocations get what is left.
    let total = decoder.total_bytes();
    let Some(rest) = limits.max_alloc.checked_sub(total) else {
        return Err(FilterError::LimitExceeded(format!(
            "decoded image needs {total} bytes, more than the limit of {}",
            limits.max_alloc
        )));
    };
    let mut pixel_limits = limits.to_image_limits();
    pixel_limits.max_alloc = Some(rest);
    decoder.set_limits(pixel_limits).map_err(decode_error)?;

    let orientation = decoder.orientation().map_err(decode_error)?;
    let (w, h) = oriented_dimensions(orientation, width, height);
    // These decoders cannot scale while decoding: the full size is always at least the plan's.
    plan(w, h)?;

    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    make_upright(&mut img, orientation);
    Ok(Decoded {
        image: normalize_depth(img),
        format,
        warning: None,
        shrink: 1,
    })
}

/// Sniffs the format and builds a decoder that has parsed the header. The strict per-side limits
/// are left off here on purpose: they would refuse an oversized image with an anonymous limit
/// error before we could report its dimensions as [`FilterError::TooManyPixels`]. `max_alloc`
/// is set, because some decoders (PNG text/ICC chunks, TIFF IFDs) allocate while parsing headers.
fn open<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(impl ImageDecoder + 'a, ImageFormat), FilterError> {
    let format = sniff(input)?;
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    let mut header_limits = limits.to_image_limits();
    header_limits.max_image_width = None;
    header_limits.max_image_height = None;
    reader.limits(header_limits);
    let decoder = reader.into_decoder().map_err(decode_error)?;
    Ok((decoder, format))
}

fn decode_error(e: ImageError) -> FilterError {
    match e {
        ImageError::Unsupported(u) => FilterError::UnsupportedFormat(u.to_string()),
        ImageError::Limits(l) => FilterError::LimitExceeded(l.to_string()),
        other => FilterError::Decode(other.to_string()),
    }
}
