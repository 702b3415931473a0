//! Convolution kernels: Gaussian blur and unsharp mask.
//!
//! Trust boundary: none of its own; sigma arrives validated (`0 < sigma <= 100`), which bounds
//! the kernel width and so the CPU cost per pixel. Image sizes arrive bounded by the limits.
//!
//! 8-bit images (L8, LA8, RGB8, RGBA8) are blurred with `libblur`'s SIMD fixed-point separable
//! convolution; 16-bit images keep the `image` crate's path. The fast path is built to match
//! `image`'s `blur` rather than libblur's own Gaussian: the kernel is `image`'s (same size from
//! sigma, same f32 weights, see [`image_kernel`]), the edges are clamped as `image` clamps them,
//! both use Q0.15 fixed point with an 8-bit intermediate between the passes, and alpha is
//! blurred like any other channel (no premultiplication, as in `image`). The result is within
//! rounding of `image`'s (PSNR well above 40 dB on photos; tests/fidelity.rs).
//!
//! One deliberate difference: `image` truncates each Q0.15 weight, so its kernel sums to less
//! than 1 and large blurs darken (a uniform 255 image comes out 253 at sigma 30, 249 at 100).
//! Here the weights are rounded so that they sum to exactly 1.0 (see [`quantize_q15`]): a
//! uniform image stays exactly uniform at every sigma. 16-bit images keep `image`'s drift.
//!
//! Threads: libblur is always called with `ThreadingPolicy::Single`, so no thread is started
//! (a worker handles one job per process; the server parallelises across workers).

use image::{DynamicImage, ImageBuffer, Pixel};
use libblur::{BlurImage, BlurImageMut, BufferStore, EdgeMode, EdgeMode2D, FastBlurChannels};

/// Gaussian blur with standard deviation `sigma` pixels.
pub fn blur(img: DynamicImage, sigma: f32) -> DynamicImage {
    use DynamicImage as D;
    // `image` maps sigma 0 to 0.8; validation refuses 0, but a direct caller may pass it.
    let sigma = if sigma == 0.0 { 0.8 } else { sigma };
    if !(sigma.is_normal() && sigma > 0.0) {
        // `image` would panic here; leave the image alone instead.
        return img;
    }
    match img {
        D::ImageLuma8(buf) => D::ImageLuma8(blur_buffer_8(&buf, sigma)),
        D::ImageLumaA8(buf) => D::ImageLumaA8(blur_buffer_8(&buf, sigma)),
        D::ImageRgb8(buf) => D::ImageRgb8(blur_buffer_8(&buf, sigma)),
        D::ImageRgba8(buf) => D::ImageRgba8(blur_buffer_8(&buf, sigma)),
        other => other.blur(sigma),
    }
}

/// Unsharp mask: blur with `sigma`, then push each channel away from its blurred value where
/// they differ by more than `threshold`.
///
/// 8-bit images use the fast blur above and then `image`'s own per-channel rule
/// (`diff = orig - blurred; if |diff| > threshold { clamp(orig + diff) } else { orig }`).
/// `image`'s `unsharpen` blurs in f32 and rounds once, the fast blur rounds after each pass,
/// so a blurred value can differ by one step, which moves the result by at most one step
/// (and can flip the threshold test for differences exactly at the threshold).
pub fn sharpen(img: DynamicImage, sigma: f32, threshold: i32) -> DynamicImage {
    use DynamicImage as D;
    if !(sigma.is_normal() && sigma > 0.0) {
        return img;
    }
    match img {
        D::ImageLuma8(buf) => D::ImageLuma8(unsharpen_8(buf, sigma, threshold)),
        D::ImageLumaA8(buf) => D::ImageLumaA8(unsharpen_8(buf, sigma, threshold)),
        D::ImageRgb8(buf) => D::ImageRgb8(unsharpen_8(buf, sigma, threshold)),
        D::ImageRgba8(buf) => D::ImageRgba8(unsharpen_8(buf, sigma, threshold)),
        other => other.unsharpen(sigma, threshold),
    }
}

/// `image`'s kernel length for `sigma` (`GaussianBlurParameters::new_from_sigma`): about
/// 6.6 sigma, odd, at least 3. sigma <= 100 keeps it <= 665.
fn image_kernel_size(sigma: f32) -> usize {
    let size = ((((sigma - 0.8) / 0.3) + 1.0) * 2.0 + 1.0).max(3.0) as usize;
    if size % 2 == 0 {
        size + 1
    } else {
        size
    }
}

/// `image`'s normalised 1-D Gaussian (`get_gaussian_kernel_1d`), computed the same way in f32
/// so that the weights agree to the last bit before quantisation.
fn image_kernel(sigma: f32) -> Vec<f32> {
    let width = image_kernel_size(sigma);
    let scale = 1.0 / ((2.0 * std::f32::consts::PI).sqrt() * sigma);
    let mean = (width / 2) as f32;
    let mut kernel: Vec<f32> = (0..width)
        .map(|x| (-0.5 * ((x as f32 - mean) / sigma).powf(2.0)).exp() * scale)
        .collect();
    let sum: f32 = kernel.iter().sum();
    if sum != 0.0 {
        let inv = 1.0 / sum;
        kernel.iter_mut().for_each(|w| *w *= inv);
    }
    kernel
}

/// Fixed-point precision of libblur's 8-bit path (`ApproxLevel for i32`), as in `image`.
const Q: u32 = 15;

/// Rounds `kernel` (odd, symmetric, summing to ~1) to Q0.15 weights that sum to exactly
/// `1 << 15` and stay symmetric, by largest remainder: floor every weight, then hand the
/// missing units to the symmetric pairs with the largest fractional parts (the centre takes
/// an odd one). Returned as f32 values `w / 32768`, which are exact, so libblur's own
/// `(w * 32768) as i32` gets these integers back unchanged. Zero taps at both ends are
/// dropped (they only cost time). Energy-preserving: a uniform image stays uniform.
fn quantize_q15(kernel: &[f32]) -> Vec<f32> {
    let one = f64::from(1u32 << Q);
    let n = kernel.len();
    let half = n / 2;
    let scaled: Vec<f64> = kernel.iter().map(|&w| f64::from(w) * one).collect();
    let mut q: Vec<i64> = scaled.iter().map(|w| w.floor() as i64).collect();
    let mut missing = (1i64 << Q) - q.iter().sum::<i64>();
    // Pairs (i, n-1-i) for i < half, largest remainder first; ties by index for determinism.
    let mut pairs: Vec<usize> = (0..half).collect();
    pairs.sort_by(|&a, &b| {
        let (ra, rb) = (scaled[a] - scaled[a].floor(), scaled[b] - scaled[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in pairs.iter().cycle().take(if missing > 1 { n } else { 0 }) {
        if missing < 2 {
            break;
        }
        q[i] += 1;
        q[n - 1 - i] += 1;
        missing -= 2;
    }
    q[half] += missing;
    let first = q.iter().position(|&w| w != 0).unwrap_or(half).min(half);
    q[first..n - first]
        .iter()
        .map(|&w| (w as f64 / one) as f32)
        .collect()
}

/// Blurs an 8-bit buffer of 1..=4 channels with libblur, falling back to `image` if libblur
/// refuses it (it should not: sizes are non-zero and the layout is the one it documents).
fn blur_buffer_8<P>(buf: &ImageBuffer<P, Vec<u8>>, sigma: f32) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    let kernel = quantize_q15(&image_kernel(sigma));
    let (w, h) = buf.dimensions();
    let out = match P::CHANNEL_COUNT {
        1 => blur_raw::<1>(buf.as_raw(), w, h, &kernel),
        2 => blur_raw::<2>(buf.as_raw(), w, h, &kernel),
        3 => blur_raw::<3>(buf.as_raw(), w, h, &kernel),
        4 => blur_raw::<4>(buf.as_raw(), w, h, &kernel),
        _ => None,
    };
    match out.and_then(|v| ImageBuffer::from_raw(w, h, v)) {
        Some(out) => out,
        None => image::imageops::blur(buf, sigma),
    }
}

/// Separable convolution of an interleaved `N`-channel 8-bit image with `kernel` both ways,
/// edges clamped; `None` on any libblur error.
fn blur_raw<const N: usize>(src: &[u8], w: u32, h: u32, kernel: &[f32]) -> Option<Vec<u8>> {
    if w == 0 || h == 0 {
        return Some(src.to_vec());
    }
    let stride = w.checked_mul(N as u32)?;
    // libblur's generic filter takes the channel count from `N`; `channels` only matters for
    // its default stride, which is set explicitly here (there is no 2-channel variant).
    let channels = match N {
        3 => FastBlurChannels::Channels3,
        4 => FastBlurChannels::Channels4,
        _ => FastBlurChannels::Plane,
    };
    let src = BlurImage {
        data: std::borrow::Cow::Borrowed(src),
        width: w,
        height: h,
        stride,
        channels,
    };
    let mut out = vec![0u8; src.data.len()];
    let mut dst = BlurImageMut {
        data: BufferStore::Borrowed(&mut out),
        width: w,
        height: h,
        stride,
        channels,
    };
    libblur::filter_1d_approx::<u8, f32, i32, N>(
        &src,
        &mut dst,
        kernel,
        kernel,
        EdgeMode2D::new(EdgeMode::Clamp),
        libblur::Scalar::default(),
        libblur::ThreadingPolicy::Single,
    )
    .ok()?;
    Some(out)
}

fn unsharpen_8<P>(
    buf: ImageBuffer<P, Vec<u8>>,
    sigma: f32,
    threshold: i32,
) -> ImageBuffer<P, Vec<u8>>
where
    P: Pixel<Subpixel = u8> + 'static,
{
    // `unsharpen` does not map sigma 0 to 0.8 (it would panic); callers validated sigma > 0.
    let mut blurred = blur_buffer_8(&buf, sigma);
    for (b, &o) in blurred.iter_mut().zip(buf.iter()) {
        let diff = i32::from(o) - i32::from(*b);
        *b = if diff.abs() > threshold {
            (i32::from(o) + diff).clamp(0, 255) as u8
        } else {
            o
        };
    }
    blurred
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::apply;
    use crate::ops::Op;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    fn variance(img: &GrayImage) -> f64 {
        let n = f64::from(img.width() * img.height());
        let mean = img.pixels().map(|p| f64::from(p[0])).sum::<f64>() / n;
        img.pixels()
            .map(|p| (f64::from(p[0]) - mean).powi(2))
            .sum::<f64>()
            / n
    }

    fn checkerboard() -> GrayImage {
        GrayImage::from_fn(16, 12, |x, y| {
            Luma([if (x + y) % 2 == 0 { 0 } else { 255 }])
        })
    }

    #[test]
    fn blur_of_uniform_image_stays_uniform() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(9, 7, Rgb([12, 130, 240])));
        for sigma in [0.5, 2.0, 10.0, 20.0] {
            let out = apply(img.clone(), &Op::Blur { sigma }).unwrap();
            assert_eq!(out, img, "sigma {sigma}");
        }
        // Known upstream drift (see module docs): still uniform, at most 3% darker.
        for sigma in [30.0, 100.0] {
            let out = apply(img.clone(), &Op::Blur { sigma }).unwrap();
            let first = out.as_rgb8().unwrap().get_pixel(0, 0).0;
            assert!(out.as_rgb8().unwrap().pixels().all(|p| p.0 == first));
            for (got, want) in first.iter().zip([12u8, 130, 240]) {
                assert!(
                    *got <= want && u32::from(*got) * 100 >= u32::from(want) * 97,
                    "sigma {sigma}: {first:?}"
                );
            }
        }
    }

    #[test]
    fn blur_reduces_checkerboard_variance() {
        let img = checkerboard();
        let before = variance(&img);
        let out = apply(DynamicImage::ImageLuma8(img), &Op::Blur { sigma: 2.0 }).unwrap();
        let after = variance(out.as_luma8().unwrap());
        assert!(after < before / 10.0, "{before} -> {after}");
    }

    #[test]
    fn sharpen_increases_edge_contrast() {
        // A soft vertical edge: sharpening must steepen it.
        let img = GrayImage::from_fn(16, 4, |x, _| Luma([(x * 16).min(255) as u8]));
        let before = variance(&img);
        let op = Op::Sharpen {
            sigma: 2.0,
            threshold: 0,
        };
        let out = apply(DynamicImage::ImageLuma8(img.clone()), &op).unwrap();
        assert!(variance(out.as_luma8().unwrap()) > before);
        // A threshold above every difference leaves the image untouched.
        let op = Op::Sharpen {
            sigma: 2.0,
            threshold: 255,
        };
        let out = apply(DynamicImage::ImageLuma8(img.clone()), &op).unwrap();
        assert_eq!(out.as_luma8().unwrap(), &img);
    }

    #[test]
    fn large_sigma_on_tiny_image() {
        let out = apply(DynamicImage::new_rgba8(1, 1), &Op::Blur { sigma: 100.0 }).unwrap();
        assert_eq!((out.width(), out.height()), (1, 1));
        let out = apply(
            DynamicImage::new_luma16(3, 2),
            &Op::Sharpen {
                sigma: 100.0,
                threshold: 0,
            },
        )
        .unwrap();
        assert_eq!((out.width(), out.height()), (3, 2));
    }
}
