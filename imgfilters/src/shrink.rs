//! Shrink-on-load: whether the pipeline's first op lets a JPEG be decoded at 1/2, 1/4 or 1/8
//! of its size, and finishing that op on the smaller image.
//!
//! Trust boundary: none of its own; the op is validated and its output size was checked
//! against the limits by the pipeline's dry run before this is asked. The rule is libvips'
//! (and sharp's default): when the *first* op is a resampling downscale (resize in any mode,
//! scale; not thumbnail, see [`target`]), libjpeg-turbo decodes with the largest DCT scale
//! factor whose image still covers the op's target size in both dimensions, and the op then
//! resamples exactly to the size it computed from the *full* image, so the output dimensions
//! never depend on whether the shrink happened. Nearest-neighbour resizes are left alone: a
//! DCT-scaled pixel is an average, and `nearest` promises sampled source pixels. An op that
//! needs full resolution (crop, rotate, blur, ...) first means no shrink, as does any
//! non-JPEG input.

use image::DynamicImage;

use crate::error::FilterError;
use crate::filters::{geometry, output_dimensions};
use crate::limits::Limits;
use crate::ops::{Op, ResizeFilter, ResizeMode};

/// The upright size the first op produces from a `width x height` image, when it is a
/// resampling downscale the decoder may shrink for; `None` otherwise.
///
/// Thumbnail is not one: its box filter averages whole source pixels between integer block
/// bounds (`image`'s algorithm, reproduced exactly), so the blocks of a shrunk image fall at a
/// different phase than those of the full one, up to a shrunk pixel apart. Measured on
/// samples/retina.jpg: 27.5 dB from full decode + thumbnail at 1/8, 34.7 dB at 1/4 even with a
/// factor of two left to the box, against >= 41 dB for every convolution resize.
pub(crate) fn target(
    first: Option<&Op>,
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<Option<(u32, u32)>, FilterError> {
    let eligible = match first {
        Some(Op::Resize { filter, .. } | Op::Scale { filter, .. }) => {
            *filter != ResizeFilter::Nearest
        }
        _ => false,
    };
    let Some(op) = first.filter(|_| eligible) else {
        return Ok(None);
    };
    let (w, h) = output_dimensions(op, width, height, limits)?;
    Ok((w < width || h < height).then_some((w, h)))
}

/// Applies `op` (for which [`target`] gave `size` from the `full` upright size) to the image
/// decoded at 1/`shrink`: the same kernel the op uses, aimed at `size` instead of at a size
/// recomputed from the smaller input (and, for fill, at the crop of the full image).
pub(crate) fn finish(
    img: DynamicImage,
    op: &Op,
    size: (u32, u32),
    full: (u32, u32),
    shrink: u32,
) -> DynamicImage {
    let (w, h) = size;
    match *op {
        Op::Resize {
            mode: ResizeMode::Fill,
            filter,
            ..
        } => geometry::resize_fill_shrunk(img, w, h, filter, full, shrink),
        Op::Resize { filter, .. } | Op::Scale { filter, .. } => {
            geometry::resize_exact_shrunk(img, w, h, filter, full, shrink)
        }
        // `target` returns None for every other op, so the pipeline never gets here with one.
        _ => img,
    }
}
