//! Shrink-on-load: whether the pipeline's first op lets a JPEG be decoded at 1/2, 1/4 or 1/8
//! of its size, and finishing that op on the smaller image.
//!
//! Trust boundary: none of its own; the op is validated and its output size was checked
//! against the limits by the pipeline's dry run before this is asked. The rule is libvips'
//! (and sharp's default): when the *first* op is a downscale (resize in any mode, scale,
//! thumbnail), libjpeg-turbo decodes with the largest DCT scale factor whose image still
//! covers the op's target size in both dimensions, and the op then resamples exactly to the
//! size it computed from the *full* image, so the output dimensions never depend on whether
//! the shrink happened. Nearest-neighbour resizes are left alone: a DCT-scaled pixel is an
//! average, and `nearest` promises sampled source pixels. An op that needs full resolution
//! (crop, rotate, blur, ...) first means no shrink, as does any non-JPEG input.

use image::DynamicImage;

use crate::error::FilterError;
use crate::filters::{geometry, output_dimensions};
use crate::limits::Limits;
use crate::ops::{Op, ResizeFilter, ResizeMode};

/// The upright size the first op produces from a `width x height` image, when it is a
/// resampling op the decoder may shrink for; `None` otherwise.
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
        Some(Op::Thumbnail { .. }) => true,
        _ => false,
    };
    let Some(op) = first.filter(|_| eligible) else {
        return Ok(None);
    };
    let (w, h) = output_dimensions(op, width, height, limits)?;
    Ok((w < width || h < height).then_some((w, h)))
}

/// Applies `op` (for which [`target`] gave `size`) to the shrunk image: the same kernel the op
/// uses, aimed at `size` instead of at a size recomputed from the smaller input.
pub(crate) fn finish(img: DynamicImage, op: &Op, size: (u32, u32)) -> DynamicImage {
    let (w, h) = size;
    match *op {
        Op::Resize {
            mode: ResizeMode::Fill,
            filter,
            ..
        } => geometry::resize_fill(img, w, h, filter),
        Op::Resize { filter, .. } | Op::Scale { filter, .. } => {
            geometry::resize_exact(img, w, h, filter)
        }
        Op::Thumbnail { .. } => geometry::thumbnail(img, w, h),
        // `target` returns None for every other op, so the pipeline never gets here with one.
        _ => img,
    }
}
