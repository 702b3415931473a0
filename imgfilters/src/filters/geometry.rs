//! Geometry kernels: resize, thumbnail, crop, rotate, flip.
//!
//! Trust boundary: none of its own. Target sizes arrive already resolved and checked by
//! `filters::output_dimensions`; the kernels still clamp to at least 1x1 so that a direct
//! caller passing 0 gets a degenerate image instead of a panic deep inside `image`.

use image::imageops::FilterType;
use image::metadata::Orientation;
use image::DynamicImage;

use crate::ops::{FlipAxis, ResizeFilter, Rotation};

/// Largest size with the input's aspect ratio inside `box_w x box_h` (rounded, at least 1).
/// A `0` box side is "unconstrained" (derived from the other side); both `0` keeps the size.
/// Integer arithmetic, so the result cannot differ between machines.
pub fn fit_dimensions(width: u32, height: u32, box_w: u32, box_h: u32) -> (u64, u64) {
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let (bw, bh) = (u64::from(box_w), u64::from(box_h));
    let scaled = |num: u64, factor: u64, den: u64| ((num * factor + den / 2) / den).max(1);
    match (bw, bh) {
        (0, 0) => (w, h),
        (bw, 0) => (bw, scaled(h, bw, w)),
        (0, bh) => (scaled(w, bh, h), bh),
        // Width is the binding side when bw/w <= bh/h.
        (bw, bh) if bw * h <= bh * w => (bw, scaled(h, bw, w)),
        (_, bh) => (scaled(w, bh, h), bh),
    }
}

fn filter_type(f: ResizeFilter) -> FilterType {
    match f {
        ResizeFilter::Nearest => FilterType::Nearest,
        ResizeFilter::Triangle => FilterType::Triangle,
        ResizeFilter::CatmullRom => FilterType::CatmullRom,
        ResizeFilter::Gaussian => FilterType::Gaussian,
        ResizeFilter::Lanczos3 => FilterType::Lanczos3,
    }
}

/// Resamples to exactly `width x height` (used for fit, after `fit_dimensions`, and exact).
pub fn resize_exact(
    img: DynamicImage,
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> DynamicImage {
    let (width, height) = (width.max(1), height.max(1));
    if (width, height) == (img.width(), img.height()) {
        return img;
    }
    img.resize_exact(width, height, filter_type(filter))
}

/// Covers `width x height` keeping the aspect ratio, cropping the overflow equally on both
/// sides. Crops the *source* to the target aspect first and then resamples, instead of
/// `DynamicImage::resize_to_fill`'s resize-then-crop: the intermediate image is then never
/// larger than the input, whereas resize-then-crop of a 1x50000 strip to a 65535-wide box
/// would allocate a 65535x3e9 intermediate.
pub fn resize_fill(
    img: DynamicImage,
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> DynamicImage {
    let (tw, th) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let (w, h) = (u64::from(img.width()), u64::from(img.height()));
    // Source rectangle with the target's aspect ratio, as large as possible, centred.
    let (cw, ch) = if w * th > tw * h {
        (((h * tw + th / 2) / th).clamp(1, w), h)
    } else {
        (w, ((w * th + tw / 2) / tw).clamp(1, h))
    };
    let (x, y) = ((w - cw) / 2, (h - ch) / 2);
    // All four fit in u32: they are bounded by the image's own dimensions.
    let cropped = if (cw, ch) == (w, h) {
        img
    } else {
        img.crop_imm(x as u32, y as u32, cw as u32, ch as u32)
    };
    resize_exact(cropped, width, height, filter)
}

/// Fast integer downscale to exactly `width x height` (the target from `fit_dimensions`).
pub fn thumbnail(img: DynamicImage, width: u32, height: u32) -> DynamicImage {
    let (width, height) = (width.max(1), height.max(1));
    if (width, height) == (img.width(), img.height()) {
        return img;
    }
    img.thumbnail_exact(width, height)
}

/// The `width x height` rectangle at `(x, y)`; the caller has checked it lies inside.
pub fn crop(img: DynamicImage, x: u32, y: u32, width: u32, height: u32) -> DynamicImage {
    if (x, y, width, height) == (0, 0, img.width(), img.height()) {
        return img;
    }
    img.crop_imm(x, y, width, height)
}

/// Clockwise rotation.
pub fn rotate(mut img: DynamicImage, rotation: Rotation) -> DynamicImage {
    match rotation {
        Rotation::Deg90 => img.rotate90(),
        Rotation::Deg180 => {
            // apply_orientation is image's public in-place path; rotate180() would copy.
            img.apply_orientation(Orientation::Rotate180);
            img
        }
        Rotation::Deg270 => img.rotate270(),
    }
}

/// Mirror image: horizontal swaps left and right, vertical swaps top and bottom.
pub fn flip(mut img: DynamicImage, axis: FlipAxis) -> DynamicImage {
    match axis {
        FlipAxis::Horizontal => img.apply_orientation(Orientation::FlipHorizontal),
        FlipAxis::Vertical => img.apply_orientation(Orientation::FlipVertical),
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::apply;
    use crate::ops::{Op, ResizeMode};
    use image::{GenericImageView, Rgb, RgbImage};

    /// 8x6 image whose pixel at (x, y) is (x, y, 100): every position is recognisable.
    fn coords() -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(8, 6, |x, y| Rgb([x as u8, y as u8, 100])))
    }

    fn px(img: &DynamicImage, x: u32, y: u32) -> [u8; 3] {
        img.as_rgb8().unwrap().get_pixel(x, y).0
    }

    #[test]
    fn rotate90_moves_pixels_clockwise() {
        let src = coords();
        let out = apply(src.clone(), &Op::Rotate(Rotation::Deg90)).unwrap();
        assert_eq!(out.dimensions(), (6, 8));
        // Clockwise: source (x, y) lands at (H-1-y, x).
        for (x, y) in [(0, 0), (7, 0), (0, 5), (3, 2), (7, 5)] {
            assert_eq!(px(&out, 5 - y, x), [x as u8, y as u8, 100], "({x},{y})");
        }
    }

    #[test]
    fn rotate180_and_270() {
        let src = coords();
        let r180 = apply(src.clone(), &Op::Rotate(Rotation::Deg180)).unwrap();
        assert_eq!(r180.dimensions(), (8, 6));
        assert_eq!(px(&r180, 7 - 3, 5 - 2), [3, 2, 100]);
        let r270 = apply(src.clone(), &Op::Rotate(Rotation::Deg270)).unwrap();
        assert_eq!(r270.dimensions(), (6, 8));
        // Counter-clockwise: source (x, y) lands at (y, W-1-x).
        assert_eq!(px(&r270, 2, 7 - 3), [3, 2, 100]);
        // Four quarter turns are the identity.
        let mut img = src.clone();
        for _ in 0..4 {
            img = apply(img, &Op::Rotate(Rotation::Deg90)).unwrap();
        }
        assert_eq!(img, src);
    }

    #[test]
    fn flips() {
        let src = coords();
        let h = apply(src.clone(), &Op::Flip(FlipAxis::Horizontal)).unwrap();
        let v = apply(src.clone(), &Op::Flip(FlipAxis::Vertical)).unwrap();
        for (x, y) in [(0, 0), (3, 2), (7, 5)] {
            assert_eq!(px(&h, 7 - x, y), [x as u8, y as u8, 100]);
            assert_eq!(px(&v, x, 5 - y), [x as u8, y as u8, 100]);
        }
        assert_eq!(apply(h, &Op::Flip(FlipAxis::Horizontal)).unwrap(), src);
    }

    #[test]
    fn crop_extracts_the_rectangle() {
        let op = Op::Crop {
            x: 2,
            y: 1,
            width: 3,
            height: 4,
        };
        let out = apply(coords(), &op).unwrap();
        assert_eq!(out.dimensions(), (3, 4));
        for y in 0..4 {
            for x in 0..3 {
                assert_eq!(px(&out, x, y), [x as u8 + 2, y as u8 + 1, 100]);
            }
        }
    }

    fn resized(w: u32, h: u32, mode: ResizeMode, src: (u32, u32)) -> (u32, u32) {
        let op = Op::Resize {
            width: w,
            height: h,
            mode,
            filter: ResizeFilter::Triangle,
        };
        apply(DynamicImage::new_rgb8(src.0, src.1), &op)
            .unwrap()
            .dimensions()
    }

    #[test]
    fn resize_modes_give_the_right_dimensions() {
        assert_eq!(resized(200, 200, ResizeMode::Fit, (400, 300)), (200, 150));
        assert_eq!(resized(200, 200, ResizeMode::Fill, (400, 300)), (200, 200));
        assert_eq!(resized(200, 200, ResizeMode::Exact, (400, 300)), (200, 200));
        assert_eq!(resized(100, 0, ResizeMode::Fit, (400, 300)), (100, 75));
        assert_eq!(resized(0, 30, ResizeMode::Fit, (400, 300)), (40, 30));
        // Enlarging works too.
        assert_eq!(resized(800, 800, ResizeMode::Fit, (40, 30)), (800, 600));
        assert_eq!(resized(10, 50, ResizeMode::Fill, (40, 30)), (10, 50));
        // Extreme aspect ratios never produce a zero side.
        assert_eq!(resized(10, 10, ResizeMode::Fit, (4000, 1)), (10, 1));
    }

    #[test]
    fn fill_keeps_the_centre() {
        // Left third red, middle third green, right third blue; fill to a square keeps the
        // green middle.
        let img = RgbImage::from_fn(300, 100, |x, _| match x / 100 {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        });
        let op = Op::Resize {
            width: 10,
            height: 10,
            mode: ResizeMode::Fill,
            filter: ResizeFilter::Nearest,
        };
        let out = apply(DynamicImage::ImageRgb8(img), &op).unwrap();
        assert_eq!(out.dimensions(), (10, 10));
        for x in 0..10 {
            assert_eq!(px(&out, x, 5), [0, 255, 0]);
        }
    }

    #[test]
    fn thumbnail_fits_and_never_enlarges() {
        let t = |max, src: (u32, u32)| {
            apply(DynamicImage::new_rgb8(src.0, src.1), &Op::Thumbnail { max })
                .unwrap()
                .dimensions()
        };
        assert_eq!(t(128, (400, 300)), (128, 96));
        assert_eq!(t(128, (300, 400)), (96, 128));
        assert_eq!(t(128, (50, 20)), (50, 20));
    }

    #[test]
    fn kernels_clamp_zero_sizes_instead_of_panicking() {
        let img = DynamicImage::new_rgb8(4, 4);
        assert_eq!(
            resize_exact(img.clone(), 0, 0, ResizeFilter::Nearest).dimensions(),
            (1, 1)
        );
        assert_eq!(
            resize_fill(img.clone(), 0, 3, ResizeFilter::Nearest).dimensions(),
            (1, 3)
        );
        assert_eq!(thumbnail(img, 0, 0).dimensions(), (1, 1));
    }
}
