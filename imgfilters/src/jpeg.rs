//! JPEG decoding with libjpeg-turbo 3 (the TurboJPEG 3 API through the `turbojpeg` crate),
//! with optional DCT-domain downscaling ("shrink-on-load").
//!
//! Trust boundary: hostile JPEG bytes reach C code here. libjpeg-turbo is the most exercised
//! JPEG decoder there is (fuzzed in OSS-Fuzz for years), reads only from the in-memory buffer
//! it is given (no file, no environment, no new system call), and its output buffer is
//! allocated by us, sized from the header after that header has passed the same checks as
//! every other format: `max_pixels`, the caller's geometry pre-check, then `max_alloc`.
//!
//! Damage: libjpeg-turbo recovers from corrupt entropy-coded data and from truncation (it
//! resynchronises at restart markers, pads a truncated scan) and reports a *warning*. The
//! TurboJPEG 3 default (`TJPARAM_STOPONWARNING` off, which the crate neither exposes nor
//! changes) decodes to the end anyway; only its return value says "error", with the
//! warning's text. The crate does not expose `tj3GetErrorCode` either, so a warning is told
//! from a fatal error by its text: libjpeg's warning messages are a fixed table
//! (`JWRN_*` in jerror.h of the vendored 3.1 source, pinned by Cargo.lock), and after a fatal
//! error the error's own message replaces the warning's. A warning keeps the recovered
//! pixels; anything else is [`FilterError::Decode`].

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};
use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

use crate::error::FilterError;
use crate::limits::Limits;
use crate::orient::{jpeg_orientation, oriented_dimensions};

/// Most progressive scans accepted. A progressive JPEG may legally repeat refinement scans
/// without end, each one a pass over the whole coefficient buffer, so that a small file costs
/// minutes of CPU (libjpeg-turbo's "Two Issues with the JPEG Standard"); real encoders write
/// ten or so. libjpeg-turbo's own tools suggest a limit of this order.
const MAX_SCANS: u32 = 500;

/// The text of every libjpeg(-turbo) warning (the `JWRN_*` messages of jerror.h), up to the
/// first `printf` argument. A warning means the decoder recovered and produced every row.
const WARNINGS: [&str; 12] = [
    "Unknown Adobe color transform code ",
    "Corrupt JPEG data: bad arithmetic code",
    "Inconsistent progression sequence for component ",
    "Corrupt JPEG data: premature end of data segment",
    "Corrupt JPEG data: bad Huffman code",
    "Corrupt JPEG data: found marker ",
    "Corrupt JPEG data: bad ICC marker",
    "Warning: unknown JFIF revision number ",
    "Premature end of JPEG file",
    "Invalid SOS parameters for sequential JPEG",
    "Application transferred too many scanlines",
    // "Corrupt JPEG data: %u extraneous bytes before marker 0x%02x"
    "Corrupt JPEG data: ",
];

/// An upper bound of the whole-image coefficient buffer libjpeg allocates (inside the
/// library, past our pixel buffer) to decode a progressive JPEG: every component's 8x8 blocks
/// at full size, 64 coefficients of 2 bytes each, the image padded to whole 16-pixel MCUs
/// (scaling the output down does not shrink it). Subsampled chroma needs less; counting it in
/// full keeps the bound simple and on the safe side. A sequential JPEG whose components come
/// in separate scans needs the same buffer, which the header does not announce; it stays
/// bounded by `max_pixels` (at most 8 bytes a pixel) and the worker's address-space limit.
fn coefficient_bytes(width: u32, height: u32, colorspace: Colorspace) -> u64 {
    let components: u64 = match colorspace {
        Colorspace::Gray => 1,
        Colorspace::CMYK | Colorspace::YCCK => 4,
        _ => 3,
    };
    let padded = |n: u32| u64::from(n).div_ceil(16) * 16;
    components * padded(width) * padded(height) * 2
}

/// A decoded JPEG, upright orientation still to be applied by the caller.
pub(crate) struct Decoded {
    pub image: DynamicImage,
    pub orientation: Orientation,
    /// libjpeg-turbo's warning when it recovered from damaged data.
    pub warning: Option<&'static str>,
    /// The DCT scaling denominator used (1, 2, 4 or 8).
    pub shrink: u32,
}

/// The warning (its [`WARNINGS`] entry) if the `turbojpeg` crate's error is a libjpeg warning
/// (see the file header), `None` for a fatal error.
fn warning(e: &turbojpeg::Error) -> Option<&'static str> {
    match e {
        turbojpeg::Error::TurboJpegError(msg) => {
            WARNINGS.iter().copied().find(|w| msg.starts_with(w))
        }
        _ => None,
    }
}

fn decode_error(e: turbojpeg::Error) -> FilterError {
    FilterError::Decode(e.to_string())
}

/// The DCT scaling denominator (1, 2, 4 or 8) for a stored `width x height` image: the largest
/// whose scaled image is still at least `target` (upright) in both dimensions.
pub(crate) fn shrink_factor(
    width: u32,
    height: u32,
    orientation: Orientation,
    target: (u32, u32),
) -> u32 {
    [8u32, 4, 2]
        .into_iter()
        .find(|&d| {
            let (w, h) = oriented_dimensions(orientation, width.div_ceil(d), height.div_ceil(d));
            w >= target.0 && h >= target.1
        })
        .unwrap_or(1)
}

/// Decodes a JPEG. `plan` is called with the upright header dimensions before any pixel is
/// decoded; it runs the caller's geometry pre-check and returns the smallest upright size the
/// decoded image may have (shrink-on-load), or `None` for full size.
///
/// `Ok(None)`: libjpeg-turbo warned while reading the *header* (e.g. stray bytes between
/// markers). The crate's header call then fails before decoding, so the caller decodes with
/// the `image` crate instead, as it did before libjpeg-turbo decoded.
pub(crate) fn decode(
    input: &[u8],
    limits: &Limits,
    plan: impl FnOnce(u32, u32) -> Result<Option<(u32, u32)>, FilterError>,
) -> Result<Option<Decoded>, FilterError> {
    let mut d = Decompressor::new().map_err(decode_error)?;
    let header = match d.read_header(input) {
        Ok(h) => h,
        Err(e) if warning(&e).is_some() => return Ok(None),
        Err(e) => return Err(decode_error(e)),
    };
    // JPEG stores each side in 16 bits, so these conversions cannot fail on what libjpeg
    // accepted; saturating keeps that an error below rather than a panic.
    let width = u32::try_from(header.width).unwrap_or(u32::MAX);
    let height = u32::try_from(header.height).unwrap_or(u32::MAX);
    limits.check_pixels(width.into(), height.into())?;
    if width == 0 || height == 0 {
        return Err(FilterError::Decode(format!(
            "image has zero size ({width}x{height})"
        )));
    }
    let orientation = jpeg_orientation(input);
    let (w, h) = oriented_dimensions(orientation, width, height);
    let target = plan(w, h)?;

    // Lossless JPEG has no DCT to scale in.
    let denom = match target {
        Some(t) if !header.is_lossless => shrink_factor(width, height, orientation, t),
        _ => 1,
    };
    let scale = ScalingFactor::new(1, denom as usize);
    d.set_scaling_factor(scale).map_err(decode_error)?;
    d.set_scan_limit(MAX_SCANS).map_err(decode_error)?;
    let (sw, sh) = (scale.scale(header.width), scale.scale(header.height));

    // Grey stays one channel (as `image` gives L8); CMYK and YCCK come out as CMYK and are
    // converted to RGB below; everything else is RGB.
    let (format, cmyk) = match header.colorspace {
        Colorspace::Gray => (PixelFormat::GRAY, false),
        Colorspace::CMYK | Colorspace::YCCK => (PixelFormat::CMYK, true),
        _ => (PixelFormat::RGB, false),
    };
    let pitch = sw * format.size();
    let len = pitch as u64 * sh as u64;
    // The CMYK buffer and the RGB image made from it exist together.
    let mut total = if cmyk { len + len / 4 * 3 } else { len };
    if header.is_progressive {
        total = total.saturating_add(coefficient_bytes(width, height, header.colorspace));
    }
    if total > limits.max_alloc {
        return Err(FilterError::LimitExceeded(format!(
            "decoded image needs {total} bytes, more than the limit of {}",
            limits.max_alloc
        )));
    }
    let mut pixels = vec![0u8; len as usize];
    let out = Image {
        pixels: pixels.as_mut_slice(),
        width: sw,
        pitch,
        height: sh,
        format,
    };
    let warning = match d.decompress(input, out) {
        Ok(()) => None,
        Err(e) => match warning(&e) {
            Some(w) => Some(w.trim_end_matches([' ', ':'])),
            None => return Err(decode_error(e)),
        },
    };

    let (sw, sh) = (sw as u32, sh as u32);
    let image = match format {
        PixelFormat::GRAY => GrayImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageLuma8),
        PixelFormat::CMYK => RgbImage::from_raw(sw, sh, cmyk_to_rgb(&pixels)).map(Into::into),
        _ => RgbImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageRgb8),
    };
    // from_raw only refuses a buffer shorter than the dimensions, which we sized ourselves.
    let image = image.ok_or_else(|| FilterError::Decode("decoded buffer size mismatch".into()))?;
    Ok(Some(Decoded {
        image,
        orientation,
        warning,
        shrink: denom,
    }))
}

/// CMYK as libjpeg-turbo returns it (Adobe's inverted convention, as Photoshop writes it) to
/// RGB by the formula of the `image` crate's decoder (zune-jpeg), `R = C * K / 255` in its
/// exact integer rounding, so a CMYK JPEG looks the same as it did before.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mul = |v: u8, k: u8| {
        let t = u32::from(v) * u32::from(k) + 128;
        ((t + (t >> 8)) >> 8) as u8
    };
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        rgb.extend_from_slice(&[mul(p[0], p[3]), mul(p[1], p[3]), mul(p[2], p[3])]);
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_factor_keeps_the_target_covered() {
        let up = Orientation::NoTransforms;
        assert_eq!(shrink_factor(4000, 3000, up, (500, 375)), 8);
        assert_eq!(shrink_factor(4000, 3000, up, (501, 375)), 4);
        assert_eq!(shrink_factor(4000, 3000, up, (2000, 1500)), 2);
        assert_eq!(shrink_factor(4000, 3000, up, (2001, 10)), 1);
        // Sides round up: 1001/8 -> 126 still covers 126.
        assert_eq!(shrink_factor(1001, 1001, up, (126, 126)), 8);
        // Stored 4000x3000 rotated a quarter turn is 3000x4000 upright.
        assert_eq!(
            shrink_factor(4000, 3000, Orientation::Rotate90, (375, 500)),
            8
        );
        assert_eq!(
            shrink_factor(4000, 3000, Orientation::Rotate90, (500, 375)),
            4
        );
    }

    #[test]
    fn warnings_are_told_from_errors_by_text() {
        let e = |s: &str| turbojpeg::Error::TurboJpegError(s.into());
        assert_eq!(
            warning(&e("Premature end of JPEG file")),
            Some("Premature end of JPEG file")
        );
        assert_eq!(
            warning(&e(
                "Corrupt JPEG data: 12 extraneous bytes before marker 0xd9"
            )),
            Some("Corrupt JPEG data: ")
        );
        for fatal in [
            "Unsupported marker type 0x57",
            "Not a JPEG file: starts with 0x00 0x00",
            "Progressive JPEG image has more than 500 scans",
            "Premature end of input file",
        ] {
            assert_eq!(warning(&e(fatal)), None, "{fatal}");
        }
        assert_eq!(warning(&turbojpeg::Error::Null), None);
    }

    #[test]
    fn cmyk_conversion_matches_zune() {
        assert_eq!(
            cmyk_to_rgb(&[255, 0, 128, 255, 255, 255, 255, 0]),
            [255, 0, 128, 0, 0, 0]
        );
    }
}
