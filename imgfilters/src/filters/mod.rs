//! Applying one [`Op`] to a decoded image, and the geometry each op produces.
//!
//! Trust boundary: the image is already decoded and bounded, but the op's parameters come from
//! the network. Every op's output size is computed and checked against the limits *before* the
//! kernel runs, so no op can be used to allocate more than `max_pixels` (e.g. a tiny image
//! resized to 65535x65535). The kernels themselves live in the submodules, one function per
//! op, so a faster implementation can replace one without touching this dispatch.

pub mod color;
pub mod convolve;
pub mod geometry;

use image::DynamicImage;

use crate::error::FilterError;
use crate::format::normalize_depth;
use crate::limits::Limits;
use crate::ops::{Op, ResizeMode, Rotation};

/// Applies `op` with the default [`Limits`].
pub fn apply(img: DynamicImage, op: &Op) -> Result<DynamicImage, FilterError> {
    apply_with_limits(img, op, &Limits::default())
}

/// Applies `op`, refusing invalid parameters and outputs larger than `limits.max_pixels`.
pub fn apply_with_limits(
    img: DynamicImage,
    op: &Op,
    limits: &Limits,
) -> Result<DynamicImage, FilterError> {
    op.validate()
        .map_err(|reason| FilterError::BadSpec { step: None, reason })?;
    let (width, height) = output_dimensions(op, img.width(), img.height(), limits)?;
    // Callers outside the pipeline may hand us float images; see `normalize_depth`.
    let img = normalize_depth(img);
    Ok(match *op {
        Op::Blur { sigma } => convolve::blur(img, sigma),
        Op::Sharpen { sigma, threshold } => convolve::sharpen(img, sigma, threshold),
        Op::Resize { mode, filter, .. } => match mode {
            ResizeMode::Fill => geometry::resize_fill(img, width, height, filter),
            ResizeMode::Fit | ResizeMode::Exact => {
                geometry::resize_exact(img, width, height, filter)
            }
        },
        Op::Scale { filter, .. } => geometry::resize_exact(img, width, height, filter),
        Op::Thumbnail { .. } => geometry::thumbnail(img, width, height),
        Op::Crop { x, y, .. } => geometry::crop(img, x, y, width, height),
        Op::Rotate(r) => geometry::rotate(img, r),
        Op::Flip(axis) => geometry::flip(img, axis),
        Op::Grayscale => color::grayscale(img),
        Op::Invert => color::invert(img),
        Op::Brightness(v) => color::brightness(img, v),
        Op::Contrast(c) => color::contrast(img, c),
        Op::Noop => img,
    })
}

/// Dimensions of the image `op` produces from a `width x height` input, or the error it would
/// fail with: [`FilterError::BadGeometry`] for a crop outside the image,
/// [`FilterError::TooManyPixels`] for an output larger than `limits.max_pixels`.
/// Assumes `op` is valid ([`Op::validate`]).
pub fn output_dimensions(
    op: &Op,
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<(u32, u32), FilterError> {
    let (w, h): (u64, u64) = match *op {
        Op::Resize {
            width: bw,
            height: bh,
            mode,
            ..
        } => match mode {
            ResizeMode::Fit => geometry::fit_dimensions(width, height, bw, bh),
            ResizeMode::Fill | ResizeMode::Exact => (bw.into(), bh.into()),
        },
        Op::Scale { percent, .. } => {
            let side = |v: u32| (u64::from(v) * u64::from(percent) / 100).max(1);
            (side(width), side(height))
        }
        Op::Thumbnail { max } => {
            if width <= max && height <= max {
                (width.into(), height.into())
            } else {
                geometry::fit_dimensions(width, height, max, max)
            }
        }
        Op::Crop {
            x,
            y,
            width: cw,
            height: ch,
        } => {
            let fits = u64::from(x) + u64::from(cw) <= u64::from(width)
                && u64::from(y) + u64::from(ch) <= u64::from(height);
            if !fits {
                return Err(FilterError::BadGeometry {
                    x,
                    y,
                    width: cw,
                    height: ch,
                    image_width: width,
                    image_height: height,
                });
            }
            (cw.into(), ch.into())
        }
        Op::Rotate(Rotation::Deg90 | Rotation::Deg270) => (height.into(), width.into()),
        _ => (width.into(), height.into()),
    };
    limits.check_pixels(w, h)?;
    // check_pixels bounds w*h, not each side; a side can still overflow u32 if max_pixels is
    // configured above u32::MAX.
    match (u32::try_from(w), u32::try_from(h)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(FilterError::TooManyPixels {
            width: u32::try_from(w).unwrap_or(u32::MAX),
            height: u32::try_from(h).unwrap_or(u32::MAX),
            limit: limits.max_pixels,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{FlipAxis, ResizeFilter};

    fn resize(w: u32, h: u32, mode: ResizeMode) -> Op {
        Op::Resize {
            width: w,
            height: h,
            mode,
            filter: ResizeFilter::Triangle,
        }
    }

    fn dims(op: &Op, w: u32, h: u32) -> Result<(u32, u32), FilterError> {
        output_dimensions(op, w, h, &Limits::default())
    }

    #[test]
    fn scale_is_an_exact_resize_to_the_rounded_down_size() {
        let scale = |percent| Op::Scale {
            percent,
            filter: ResizeFilter::Lanczos3,
        };
        assert_eq!(dims(&scale(50), 451, 300).unwrap(), (225, 150));
        assert_eq!(dims(&scale(1), 64, 64).unwrap(), (1, 1));
        assert_eq!(dims(&scale(200), 3, 5).unwrap(), (6, 10));
        assert!(matches!(
            dims(&scale(1000), 10_000, 10_000),
            Err(FilterError::TooManyPixels { .. })
        ));
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(37, 21, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, (x * y) as u8])
        }));
        let exact = Op::Resize {
            width: 18,
            height: 10,
            mode: ResizeMode::Exact,
            filter: ResizeFilter::Lanczos3,
        };
        let a = apply(img.clone(), &scale(50)).unwrap();
        let b = apply(img, &exact).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_eq!((a.width(), a.height()), (18, 10));
    }

    #[test]
    fn planned_dimensions() {
        assert_eq!(
            dims(&resize(200, 200, ResizeMode::Fit), 400, 300),
            Ok((200, 150))
        );
        assert_eq!(
            dims(&resize(200, 200, ResizeMode::Fill), 400, 300),
            Ok((200, 200))
        );
        assert_eq!(
            dims(&resize(200, 200, ResizeMode::Exact), 400, 300),
            Ok((200, 200))
        );
        assert_eq!(
            dims(&resize(800, 0, ResizeMode::Fit), 400, 300),
            Ok((800, 600))
        );
        assert_eq!(
            dims(&resize(0, 100, ResizeMode::Fit), 400, 300),
            Ok((133, 100))
        );
        assert_eq!(dims(&Op::Thumbnail { max: 128 }, 400, 300), Ok((128, 96)));
        assert_eq!(dims(&Op::Thumbnail { max: 128 }, 100, 20), Ok((100, 20)));
        assert_eq!(dims(&Op::Rotate(Rotation::Deg90), 8, 6), Ok((6, 8)));
        assert_eq!(dims(&Op::Rotate(Rotation::Deg180), 8, 6), Ok((8, 6)));
        assert_eq!(dims(&Op::Flip(FlipAxis::Vertical), 8, 6), Ok((8, 6)));
    }

    #[test]
    fn growth_beyond_max_pixels_is_refused_before_allocating() {
        let op = resize(65535, 65535, ResizeMode::Exact);
        assert_eq!(
            dims(&op, 1, 1),
            Err(FilterError::TooManyPixels {
                width: 65535,
                height: 65535,
                limit: 50_000_000
            })
        );
        // Auto height of a very tall image can exceed u32; it saturates in the error.
        let op = resize(65535, 0, ResizeMode::Fit);
        assert!(matches!(
            dims(&op, 1, 4_000_000),
            Err(FilterError::TooManyPixels {
                width: 65535,
                height: u32::MAX,
                ..
            })
        ));
        // The kernel is never reached: this would otherwise allocate 17 GB.
        let img = DynamicImage::new_rgba8(1, 1);
        assert!(matches!(
            apply(img, &resize(65535, 65535, ResizeMode::Exact)),
            Err(FilterError::TooManyPixels { .. })
        ));
    }

    #[test]
    fn crop_outside_is_bad_geometry() {
        let crop = |x, y, width, height| Op::Crop {
            x,
            y,
            width,
            height,
        };
        assert_eq!(dims(&crop(0, 0, 8, 6), 8, 6), Ok((8, 6)));
        assert_eq!(dims(&crop(7, 5, 1, 1), 8, 6), Ok((1, 1)));
        for c in [
            crop(8, 0, 1, 1),
            crop(0, 0, 9, 6),
            crop(2, 3, 4, 4),
            crop(65535, 65535, 65535, 65535),
        ] {
            assert!(
                matches!(dims(&c, 8, 6), Err(FilterError::BadGeometry { .. })),
                "{c:?}"
            );
            assert!(matches!(
                apply(DynamicImage::new_rgb8(8, 6), &c),
                Err(FilterError::BadGeometry {
                    image_width: 8,
                    image_height: 6,
                    ..
                })
            ));
        }
    }

    #[test]
    fn apply_revalidates_parameters() {
        let img = DynamicImage::new_rgb8(4, 4);
        assert!(matches!(
            apply(img.clone(), &Op::Blur { sigma: f32::NAN }),
            Err(FilterError::BadSpec { .. })
        ));
        assert!(matches!(
            apply(img, &resize(0, 0, ResizeMode::Fit)),
            Err(FilterError::BadSpec { .. })
        ));
    }
}
