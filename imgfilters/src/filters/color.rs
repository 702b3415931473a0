//! Per-pixel colour kernels: grayscale, invert, brightness, contrast.
//!
//! Trust boundary: none of its own; parameters arrive validated (`Op::validate`) and images
//! arrive as 8- or 16-bit integer samples (`format::normalize_depth`), which is what keeps the
//! `image` crate's integer casts in these kernels from panicking.

use image::{DynamicImage, ImageBuffer, Pixel};

/// Luma (Rec. 709 weights, as `image` computes them); keeps alpha when there is one.
///
/// Integer images are converted here with `image`'s exact integer formula
/// (`(2126 r + 7152 g + 722 b) / 10000`, truncating) in one flat pass over the samples,
/// instead of `image`'s per-pixel generic conversion; an image that is already grey is
/// returned as it is instead of being copied. Same pixels as `DynamicImage::grayscale`.
pub fn grayscale(img: DynamicImage) -> DynamicImage {
    use DynamicImage as D;
    match img {
        D::ImageLuma8(_) | D::ImageLumaA8(_) | D::ImageLuma16(_) | D::ImageLumaA16(_) => img,
        D::ImageRgb8(b) => D::ImageLuma8(luma_of::<_, _, 3, 1>(&b)),
        D::ImageRgba8(b) => D::ImageLumaA8(luma_of::<_, _, 4, 2>(&b)),
        D::ImageRgb16(b) => D::ImageLuma16(luma_of::<_, _, 3, 1>(&b)),
        D::ImageRgba16(b) => D::ImageLumaA16(luma_of::<_, _, 4, 2>(&b)),
        other => other.grayscale(),
    }
}

/// Grey (+ alpha) buffer of an RGB(A) buffer: `IN` = 3 or 4 source channels, `OUT` = 1 or 2.
fn luma_of<P, Q, const IN: usize, const OUT: usize>(
    src: &ImageBuffer<P, Vec<P::Subpixel>>,
) -> ImageBuffer<Q, Vec<P::Subpixel>>
where
    P: Pixel + 'static,
    Q: Pixel<Subpixel = P::Subpixel> + 'static,
    P::Subpixel: Into<u32> + TryFrom<u32> + Default,
{
    let (w, h) = src.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * OUT);
    for px in src.as_raw().chunks_exact(IN) {
        let (r, g, b): (u32, u32, u32) = (px[0].into(), px[1].into(), px[2].into());
        // At most 10000 * 65535 < 2^32, and the quotient is at most the sample maximum, so
        // the conversion back cannot fail.
        let l = (2126 * r + 7152 * g + 722 * b) / 10000;
        out.push(P::Subpixel::try_from(l).unwrap_or_default());
        if OUT == 2 {
            out.push(px[3]);
        }
    }
    // The length is w * h * OUT by construction.
    ImageBuffer::from_raw(w, h, out).unwrap_or_else(|| ImageBuffer::new(w, h))
}

/// `max - v` on every colour channel; alpha is left alone.
pub fn invert(mut img: DynamicImage) -> DynamicImage {
    img.invert();
    img
}

/// Adds `value` to every colour channel, clamping. `value` is in 8-bit units so that the same
/// spec means the same visual change for 8- and 16-bit inputs.
pub fn brightness(img: DynamicImage, value: i32) -> DynamicImage {
    let is_16bit = img.color().bytes_per_pixel() / img.color().channel_count() == 2;
    // 65535 / 255 = 257 exactly; validated |value| <= 255 keeps this far from overflow.
    let value = if is_16bit {
        value.saturating_mul(257)
    } else {
        value
    };
    img.brighten(value)
}

/// `image`'s contrast adjustment: `percent` > 0 increases contrast, < 0 decreases it.
pub fn contrast(img: DynamicImage, percent: f32) -> DynamicImage {
    img.adjust_contrast(percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::apply;
    use crate::ops::Op;
    use image::{Luma, LumaA, Rgb, RgbImage, Rgba, RgbaImage};

    fn gradient() -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(8, 6, |x, y| {
            Rgb([x as u8 * 30, y as u8 * 40, 200 - x as u8 * 5])
        }))
    }

    #[test]
    fn invert_twice_is_identity() {
        let src = gradient();
        let once = apply(src.clone(), &Op::Invert).unwrap();
        assert_ne!(once, src);
        assert_eq!(once.as_rgb8().unwrap().get_pixel(1, 1).0, [225, 215, 60]);
        assert_eq!(apply(once, &Op::Invert).unwrap(), src);
    }

    #[test]
    fn invert_leaves_alpha() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(2, 2, Rgba([10, 20, 30, 40])));
        let out = apply(img, &Op::Invert).unwrap();
        assert_eq!(
            out.as_rgba8().unwrap().get_pixel(0, 0).0,
            [245, 235, 225, 40]
        );
    }

    #[test]
    fn grayscale_of_red_is_its_luma() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(3, 2, Rgb([255, 0, 0])));
        let out = apply(img, &Op::Grayscale).unwrap();
        // Rec. 709: 0.2126 * 255 = 54.2
        assert_eq!(out.as_luma8().unwrap().get_pixel(2, 1), &Luma([54]));
    }

    #[test]
    fn grayscale_keeps_alpha() {
        let img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(3, 2, Rgba([0, 255, 0, 77])));
        let out = apply(img, &Op::Grayscale).unwrap();
        // Rec. 709: 0.7152 * 255 = 182.4
        assert_eq!(
            out.as_luma_alpha8().unwrap().get_pixel(0, 0),
            &LumaA([182, 77])
        );
    }

    #[test]
    fn brightness_adds_and_clamps() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                Rgb([0, 100, 250])
            } else {
                Rgb([5, 128, 255])
            }
        }));
        let up = apply(img.clone(), &Op::Brightness(20)).unwrap();
        assert_eq!(up.as_rgb8().unwrap().get_pixel(0, 0).0, [20, 120, 255]);
        let down = apply(img.clone(), &Op::Brightness(-20)).unwrap();
        assert_eq!(down.as_rgb8().unwrap().get_pixel(1, 0).0, [0, 108, 235]);
        let max = apply(img, &Op::Brightness(255)).unwrap();
        assert_eq!(max.as_rgb8().unwrap().get_pixel(0, 0).0, [255, 255, 255]);
    }

    #[test]
    fn brightness_is_in_8bit_units_for_16bit_images() {
        let img = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(1, 1, Luma([1000u16])));
        let out = apply(img, &Op::Brightness(10)).unwrap();
        assert_eq!(
            out.as_luma16().unwrap().get_pixel(0, 0),
            &Luma([1000 + 2570])
        );
    }

    #[test]
    fn contrast_spreads_and_flattens() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::from_fn(2, 1, |x, _| {
            Luma([if x == 0 { 100 } else { 156 }])
        }));
        let spread = |op| {
            let out = apply(img.clone(), &op).unwrap();
            let g = out.as_luma8().unwrap();
            i32::from(g.get_pixel(1, 0)[0]) - i32::from(g.get_pixel(0, 0)[0])
        };
        assert_eq!(spread(Op::Contrast(0.0)), 56);
        assert!(spread(Op::Contrast(50.0)) > 100);
        assert!(spread(Op::Contrast(-50.0)) < 20);
        assert_eq!(spread(Op::Contrast(-100.0)), 0);
    }
}
