//! Geometry kernels: resize, thumbnail, crop, rotate, flip.
//!
//! Trust boundary: none of its own. Target sizes arrive already resolved and checked by
//! `filters::output_dimensions`; the kernels still clamp to at least 1x1 so that a direct
//! caller passing 0 gets a degenerate image instead of a panic deep inside `image`.
//!
//! Resampling (fit, fill, exact) of 8- and 16-bit images runs on `fast_image_resize` (SIMD,
//! fixed point for 8-bit), set up to reproduce `image`'s `resize_exact`: the same filter
//! functions and supports (Triangle = Bilinear, CatmullRom, Gaussian sigma 0.5, Lanczos3;
//! the support widens with the downscale factor in both), the same pixel-centre mapping, no
//! gamma correction, and *no* alpha premultiplication (`use_alpha(false)`), because `image`
//! does not premultiply either. Premultiplying would be more correct for translucent edges,
//! but would move the output away from what the service produced so far. The results are
//! within rounding of `image`'s (PSNR >= 40 dB on photos, tests/fidelity.rs). Float images
//! (only reachable by calling these kernels directly) keep `image`'s resampler, as does any
//! case fast_image_resize refuses.
//!
//! `thumbnail` is `image`'s integer box algorithm re-implemented over rows, with the same
//! block bounds (computed in the same f32 arithmetic) and the same rounding, so it gives
//! identical pixels; only enlargement along a side, which `Op::Thumbnail` never asks for,
//! falls back to `image`.
//!
//! No kernel here starts a thread (fast_image_resize's `rayon` feature is off).

use fast_image_resize::{self as fir, ResizeAlg, ResizeOptions, Resizer};
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageBuffer, Pixel};

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

/// The fast_image_resize algorithm equivalent to `image`'s filter of the same name: its
/// filter functions are the same formulas with the same supports, and `Convolution` scales
/// the support by the downscale factor as `image` does (`Interpolation` would not).
fn fir_alg(f: ResizeFilter) -> ResizeAlg {
    use fir::FilterType as F;
    match f {
        // Not used: `nearest` reproduces `image`'s f32 sample positions exactly.
        ResizeFilter::Nearest => ResizeAlg::Nearest,
        ResizeFilter::Triangle => ResizeAlg::Convolution(F::Bilinear),
        ResizeFilter::CatmullRom => ResizeAlg::Convolution(F::CatmullRom),
        ResizeFilter::Gaussian => ResizeAlg::Convolution(F::Gaussian),
        ResizeFilter::Lanczos3 => ResizeAlg::Convolution(F::Lanczos3),
    }
}

/// Resamples the `crop` rectangle (x, y, w, h) of `img` to `width x height` with
/// fast_image_resize; `None` for colour types it is not used for, or if it refuses.
fn fast_resize(
    img: &DynamicImage,
    crop: Option<(f64, f64, f64, f64)>,
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> Option<DynamicImage> {
    use fir::pixels::{U16x2, U16x3, U16x4, U8x2, U8x3, U8x4, U16, U8};
    use DynamicImage as D;
    if filter == ResizeFilter::Nearest {
        // Callers pass whole-pixel crops with `nearest` (shrink-on-load never uses it).
        let rect = crop.map_or((0, 0, img.width(), img.height()), |(x, y, w, h)| {
            (x as u32, y as u32, w as u32, h as u32)
        });
        return nearest_dyn(img, rect, width, height);
    }
    let mut options = ResizeOptions::new()
        .resize_alg(fir_alg(filter))
        .use_alpha(false);
    if let Some((x, y, w, h)) = crop {
        options = options.crop(x, y, w, h);
    }
    let mut dst = DynamicImage::new(width, height, img.color());
    let o = &options;
    // One typed call per colour type used here: `Resizer::resize` would instantiate the
    // resampler for all 13 of fast_image_resize's pixel types (float and i32 included); these
    // instantiations are most of this crate's compile time.
    match img {
        D::ImageLuma8(_) => fir_typed::<U8>(img, &mut dst, o),
        D::ImageLumaA8(_) => fir_typed::<U8x2>(img, &mut dst, o),
        D::ImageRgb8(_) => fir_typed::<U8x3>(img, &mut dst, o),
        D::ImageRgba8(_) => fir_typed::<U8x4>(img, &mut dst, o),
        D::ImageLuma16(_) => fir_typed::<U16>(img, &mut dst, o),
        D::ImageLumaA16(_) => fir_typed::<U16x2>(img, &mut dst, o),
        D::ImageRgb16(_) => fir_typed::<U16x3>(img, &mut dst, o),
        D::ImageRgba16(_) => fir_typed::<U16x4>(img, &mut dst, o),
        _ => None,
    }?;
    Some(dst)
}

/// fast_image_resize on `src` into `dst` (same colour type) as pixel type `P`.
fn fir_typed<P: fir::PixelTrait>(
    src: &DynamicImage,
    dst: &mut DynamicImage,
    options: &ResizeOptions,
) -> Option<()> {
    use fir::{IntoImageView, IntoImageViewMut};
    let src = src.image_view::<P>()?;
    let mut dst = dst.image_view_mut::<P>()?;
    Resizer::new().resize_typed(&src, &mut dst, options).ok()
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
    fast_resize(&img, None, width, height, filter)
        .unwrap_or_else(|| img.resize_exact(width, height, filter_type(filter)))
}

/// Covers `width x height` keeping the aspect ratio, cropping the overflow equally on both
/// sides. Crops the *source* to the target aspect first and then resamples, instead of
/// `DynamicImage::resize_to_fill`'s resize-then-crop: the intermediate image is then never
/// larger than the input, whereas resize-then-crop of a 1x50000 strip to a 65535-wide box
/// would allocate a 65535x3e9 intermediate. The fast path does not even copy the crop: the
/// resizer reads the rectangle in place, so near the cut its filter sees the real pixels
/// just outside the rectangle where `image` (crop, then resize) would repeat the edge pixel;
/// only the outermost output rows/columns can differ (PSNR > 50 dB on photos).
pub fn resize_fill(
    img: DynamicImage,
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> DynamicImage {
    let (width, height) = (width.max(1), height.max(1));
    let (x, y, cw, ch) = fill_rect(img.width(), img.height(), width, height);
    if (cw, ch) == (width, height) || (cw, ch) == (img.width(), img.height()) {
        // No resampling needed, or no cropping needed: the plain paths are as fast.
        let cropped = crop(img, x, y, cw, ch);
        return resize_exact(cropped, width, height, filter);
    }
    let rect = (x.into(), y.into(), cw.into(), ch.into());
    if let Some(out) = fast_resize(&img, Some(rect), width, height, filter) {
        return out;
    }
    resize_exact(img.crop_imm(x, y, cw, ch), width, height, filter)
}

/// The centred source rectangle (x, y, w, h) of a `w x h` image with the aspect ratio of
/// `tw x th`, as large as possible: what `resize_fill` resamples.
fn fill_rect(w: u32, h: u32, tw: u32, th: u32) -> (u32, u32, u32, u32) {
    let (tw, th) = (u64::from(tw.max(1)), u64::from(th.max(1)));
    let (w, h) = (u64::from(w), u64::from(h));
    let (cw, ch) = if w * th > tw * h {
        (((h * tw + th / 2) / th).clamp(1, w), h)
    } else {
        (w, ((w * th + tw / 2) / tw).clamp(1, h))
    };
    let (x, y) = ((w - cw) / 2, (h - ch) / 2);
    // All four fit in u32: they are bounded by the image's own dimensions.
    (x as u32, y as u32, cw as u32, ch as u32)
}

/// [`resize_fill`] of a `full` sized image that was decoded at 1/`shrink` of its size
/// (shrink-on-load): the source rectangle is the one `resize_fill` would cut from the full
/// image, divided by `shrink` with sub-pixel precision, so that rounding at the small scale
/// does not shift the crop by up to `shrink` full-size pixels.
pub fn resize_fill_shrunk(
    img: DynamicImage,
    width: u32,
    height: u32,
    filter: ResizeFilter,
    full: (u32, u32),
    shrink: u32,
) -> DynamicImage {
    let (width, height) = (width.max(1), height.max(1));
    let (x, y, cw, ch) = fill_rect(full.0, full.1, width, height);
    let s = f64::from(shrink.max(1));
    let (iw, ih) = (f64::from(img.width()), f64::from(img.height()));
    let (x, y) = (
        (f64::from(x) / s).min(iw - 1.0),
        (f64::from(y) / s).min(ih - 1.0),
    );
    let rect = (
        x,
        y,
        (f64::from(cw) / s).min(iw - x),
        (f64::from(ch) / s).min(ih - y),
    );
    resample_rect(img, rect, width, height, filter, resize_fill)
}

/// [`resize_exact`] of a `full` sized image that was decoded at 1/`shrink` of its size: DCT
/// scaling rounds each side up (427 rows at 1/2 give 214), so the last shrunk row or column
/// stands for only part of one; resampling the `full / shrink` rectangle (213.5 rows) instead
/// of the whole image keeps the geometry of the full-size resize instead of stretching it by
/// up to one shrunk pixel. (The partial pixel is at the right and bottom of the stored image;
/// after a mirroring EXIF orientation it is on the other side, and this is off by less than
/// one shrunk pixel, as without the correction.)
pub fn resize_exact_shrunk(
    img: DynamicImage,
    width: u32,
    height: u32,
    filter: ResizeFilter,
    full: (u32, u32),
    shrink: u32,
) -> DynamicImage {
    let (width, height) = (width.max(1), height.max(1));
    let s = f64::from(shrink.max(1));
    let rect = (
        0.0,
        0.0,
        (f64::from(full.0) / s).min(f64::from(img.width())),
        (f64::from(full.1) / s).min(f64::from(img.height())),
    );
    resample_rect(img, rect, width, height, filter, resize_exact)
}

/// The shrunk image's source rectangle `rect` resampled to `width x height`; `whole` (the
/// same resize of the whole shrunk image) where the fast path does not apply (nearest, or a
/// pixel type it lacks).
fn resample_rect(
    img: DynamicImage,
    rect: (f64, f64, f64, f64),
    width: u32,
    height: u32,
    filter: ResizeFilter,
    whole: fn(DynamicImage, u32, u32, ResizeFilter) -> DynamicImage,
) -> DynamicImage {
    if filter != ResizeFilter::Nearest {
        if let Some(out) = fast_resize(&img, Some(rect), width, height, filter) {
            return out;
        }
    }
    whole(img, width, height, filter)
}

/// Fast integer downscale to exactly `width x height` (the target from `fit_dimensions`):
/// every source pixel contributes to exactly one target pixel, averaged with rounding.
pub fn thumbnail(img: DynamicImage, width: u32, height: u32) -> DynamicImage {
    use DynamicImage as D;
    let (width, height) = (width.max(1), height.max(1));
    if (width, height) == (img.width(), img.height()) {
        return img;
    }
    let fast = match &img {
        D::ImageLuma8(b) => thumbnail_blocks(b, width, height).map(D::ImageLuma8),
        D::ImageLumaA8(b) => thumbnail_blocks(b, width, height).map(D::ImageLumaA8),
        D::ImageRgb8(b) => thumbnail_blocks(b, width, height).map(D::ImageRgb8),
        D::ImageRgba8(b) => thumbnail_blocks(b, width, height).map(D::ImageRgba8),
        D::ImageLuma16(b) => thumbnail_blocks(b, width, height).map(D::ImageLuma16),
        D::ImageLumaA16(b) => thumbnail_blocks(b, width, height).map(D::ImageLumaA16),
        D::ImageRgb16(b) => thumbnail_blocks(b, width, height).map(D::ImageRgb16),
        D::ImageRgba16(b) => thumbnail_blocks(b, width, height).map(D::ImageRgba16),
        _ => None,
    };
    fast.unwrap_or_else(|| img.thumbnail_exact(width, height))
}

/// `image::imageops::thumbnail`'s source ranges for `new` target pixels along a side of
/// `len` source pixels, in its exact f32 arithmetic: target `i` averages source pixels
/// `ceil(i * r) .. ceil(i * r + r)` (clamped), `r = len / new`. `None` if some range is
/// empty, i.e. when enlarging; `image` then interpolates, which is left to `image`.
fn thumbnail_ranges(len: u32, new: u32) -> Option<Vec<(u32, u32)>> {
    let ratio = len as f32 / new as f32;
    (0..new)
        .map(|i| {
            let startf = i as f32 * ratio;
            let endf = startf + ratio;
            let start = (startf.ceil() as u32).clamp(0, len - 1);
            let end = (endf.ceil() as u32).clamp(start, len);
            (start != end).then_some((start, end))
        })
        .collect()
}

/// The block-average case of `image::imageops::thumbnail`, row by row: sums each block in
/// u64 (no overflow at any size `Limits` allows) and divides with `image`'s rounding
/// (`(sum + n / 2) / n`), so the pixels are identical. Neighbouring blocks may share a source
/// column or row (f32 rounding of `i * r + r` vs `(i + 1) * r`), exactly as in `image`.
fn thumbnail_blocks<P, S>(
    src: &ImageBuffer<P, Vec<S>>,
    width: u32,
    height: u32,
) -> Option<ImageBuffer<P, Vec<S>>>
where
    P: Pixel<Subpixel = S> + 'static,
    S: image::Primitive + Into<u64> + TryFrom<u64> + 'static,
{
    let (sw, sh) = src.dimensions();
    if sw == 0 || sh == 0 {
        return None;
    }
    let cols = thumbnail_ranges(sw, width)?;
    let rows = thumbnail_ranges(sh, height)?;
    let raw = src.as_raw();
    let out = match P::CHANNEL_COUNT {
        1 => thumbnail_raw::<S, 1>(raw, sw, &cols, &rows),
        2 => thumbnail_raw::<S, 2>(raw, sw, &cols, &rows),
        3 => thumbnail_raw::<S, 3>(raw, sw, &cols, &rows),
        4 => thumbnail_raw::<S, 4>(raw, sw, &cols, &rows),
        _ => None,
    }?;
    ImageBuffer::from_raw(width, height, out)
}

fn thumbnail_raw<S, const N: usize>(
    raw: &[S],
    src_width: u32,
    cols: &[(u32, u32)],
    rows: &[(u32, u32)],
) -> Option<Vec<S>>
where
    S: Copy + Into<u64> + TryFrom<u64>,
{
    let stride = src_width as usize * N;
    let mut out = Vec::with_capacity(cols.len() * rows.len() * N);
    let mut acc = vec![[0u64; N]; cols.len()];
    for &(top, bottom) in rows {
        acc.fill([0; N]);
        for y in top..bottom {
            let row = raw.get(y as usize * stride..)?.get(..stride)?;
            for (sum, &(a, b)) in acc.iter_mut().zip(cols) {
                for px in row[a as usize * N..b as usize * N].chunks_exact(N) {
                    for (s, &v) in sum.iter_mut().zip(px) {
                        *s += v.into();
                    }
                }
            }
        }
        let block_h = u64::from(bottom - top);
        for (sum, &(a, b)) in acc.iter().zip(cols) {
            let count = u64::from(b - a) * block_h;
            for &s in sum {
                out.push(S::try_from((s + count / 2) / count).ok()?);
            }
        }
    }
    Some(out)
}

/// `image`'s nearest-neighbour source index for each of `new` target pixels along a side of
/// `len` source pixels: `floor((i + 0.5) * len / new)` in f32, clamped. Computed in the same
/// f32 arithmetic as `image`, because a 1.5x enlargement puts many samples exactly on a pixel
/// boundary, where f64 (fast_image_resize's nearest) rounds the other way.
fn nearest_indices(len: u32, new: u32) -> Vec<usize> {
    let ratio = len as f32 / new as f32;
    (0..new)
        .map(|i| (((i as f32 + 0.5) * ratio).floor() as i64).clamp(0, i64::from(len) - 1) as usize)
        .collect()
}

/// `image`'s `FilterType::Nearest` resize of the `(x, y, w, h)` rectangle of `src`: a plain
/// gather through two index tables, identical pixels for every colour type.
fn nearest<P>(
    src: &ImageBuffer<P, Vec<P::Subpixel>>,
    (x, y, w, h): (u32, u32, u32, u32),
    width: u32,
    height: u32,
) -> Option<ImageBuffer<P, Vec<P::Subpixel>>>
where
    P: Pixel + 'static,
{
    let n = usize::from(P::CHANNEL_COUNT);
    let stride = src.width() as usize * n;
    let xs: Vec<usize> = nearest_indices(w, width)
        .into_iter()
        .map(|i| (i + x as usize) * n)
        .collect();
    let raw = src.as_raw();
    let mut out = Vec::with_capacity(width as usize * height as usize * n);
    for sy in nearest_indices(h, height) {
        let row = raw.get((sy + y as usize) * stride..)?.get(..stride)?;
        for &sx in &xs {
            out.extend_from_slice(row.get(sx..sx + n)?);
        }
    }
    ImageBuffer::from_raw(width, height, out)
}

/// [`nearest`] for any `DynamicImage`.
fn nearest_dyn(
    img: &DynamicImage,
    rect: (u32, u32, u32, u32),
    width: u32,
    height: u32,
) -> Option<DynamicImage> {
    use DynamicImage as D;
    Some(match img {
        D::ImageLuma8(b) => D::ImageLuma8(nearest(b, rect, width, height)?),
        D::ImageLumaA8(b) => D::ImageLumaA8(nearest(b, rect, width, height)?),
        D::ImageRgb8(b) => D::ImageRgb8(nearest(b, rect, width, height)?),
        D::ImageRgba8(b) => D::ImageRgba8(nearest(b, rect, width, height)?),
        D::ImageLuma16(b) => D::ImageLuma16(nearest(b, rect, width, height)?),
        D::ImageLumaA16(b) => D::ImageLumaA16(nearest(b, rect, width, height)?),
        D::ImageRgb16(b) => D::ImageRgb16(nearest(b, rect, width, height)?),
        D::ImageRgba16(b) => D::ImageRgba16(nearest(b, rect, width, height)?),
        D::ImageRgb32F(b) => D::ImageRgb32F(nearest(b, rect, width, height)?),
        D::ImageRgba32F(b) => D::ImageRgba32F(nearest(b, rect, width, height)?),
        _ => return None,
    })
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
